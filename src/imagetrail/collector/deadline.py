"""The collector's hard time budget: every blocking call takes its timeout from here."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Deadline:
    seconds: float
    started: float = field(default_factory=time.monotonic)

    def remaining(self) -> float:
        return max(0.0, self.started + self.seconds - time.monotonic())

    def timeout(self, cap: float, reserve: float = 0.0) -> float:
        """A timeout for one operation: at most ``cap``, never past the deadline minus ``reserve``,
        and never zero (a zero socket timeout would mean non-blocking)."""
        return max(0.05, min(cap, self.remaining() - reserve))

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0
