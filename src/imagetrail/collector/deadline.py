"""The collector's hard time budget: every blocking call takes its timeout from here.

The budget counts from the start of the process, not from the moment the collector's code
runs: the interpreter's start and the imports (seconds on a loaded agent) are part of the
step, and the Node shim's own hard deadline counts them too.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

MAX_PLAUSIBLE_AGE = 15.0


def process_age() -> float:
    """Seconds since this process started (Linux: /proc), else 0."""
    try:
        with open("/proc/self/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        with open("/proc/uptime", "rb") as handle:
            uptime = float(handle.read().split()[0])
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime, in clock ticks since boot
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0
    age = uptime - started
    # Implausible ages come from a namespaced /proc/uptime (lxcfs) against a host-relative start.
    return age if 0.0 <= age <= MAX_PLAUSIBLE_AGE else 0.0


@dataclass
class Deadline:
    seconds: float
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def from_process_start(cls, seconds: float) -> "Deadline":
        return cls(seconds, started=time.monotonic() - process_age())

    def remaining(self) -> float:
        return max(0.0, self.started + self.seconds - time.monotonic())

    def timeout(self, cap: float, reserve: float = 0.0) -> float:
        """A timeout for one operation: at most ``cap``, never past the deadline minus ``reserve``,
        and never zero (a zero socket timeout would mean non-blocking)."""
        return max(0.05, min(cap, self.remaining() - reserve))

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0
