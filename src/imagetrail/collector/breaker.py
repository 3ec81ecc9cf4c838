"""A circuit breaker per agent host and backend, shared by every job on the host.

After a failed delivery the breaker opens: for the next ``IMAGETRAIL_BREAKER_SECONDS`` (300 s)
jobs on this host keep their report at once instead of waiting for a backend that is down.
While it is open, one job per ``IMAGETRAIL_PROBE_SECONDS`` (30 s) since the last failure probes
``GET /healthz`` with a one-second budget; a good answer closes the breaker and that job delivers normally, a bad one
keeps it open for another full period.

The state is one small JSON file per backend (named after a hash of its URL) in a directory that
outlives the agent's per-job temp cleanup: ``IMAGETRAIL_STATE_DIR``, else the agent's tools
directory (``AGENT_TOOLSDIRECTORY``; GitHub: ``RUNNER_TOOL_CACHE``), else a per-user cache
directory. It holds times, a short cause and a counter - never a URL or a credential. Writes
replace the file atomically; a missing, damaged or implausible file reads as a closed breaker.
Which job probes is decided by creating ``<key>.probe-<slot>`` exclusively (``O_EXCL``), the slot
counted in probe intervals since the outage began: exactly one job per interval wins, on every
local file system.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Mapping, Optional

from imagetrail.collector.state import write_json_atomically

STATE_VERSION = 1
MAX_STATE_BYTES = 4096
PROBE_TIMEOUT_SECONDS = 1.0
CAUSE_LIMIT = 120


def _home_cache(env: Mapping[str, str]) -> Optional[str]:
    for name in ("LOCALAPPDATA", "XDG_CACHE_HOME"):  # Windows, then the XDG base directory
        value = (env.get(name) or "").strip()
        if value:
            return os.path.join(value, "imagetrail")
    home = (env.get("HOME") or "").strip() or os.path.expanduser("~")
    return os.path.join(home, ".cache", "imagetrail") if home and home != "~" else None


def state_directory(env: Mapping[str, str]) -> Optional[str]:
    """Where the host's breaker state lives (None: nowhere usable, the breaker stays closed)."""
    override = (env.get("IMAGETRAIL_STATE_DIR") or "").strip()
    if override:
        return override
    for name in ("AGENT_TOOLSDIRECTORY", "RUNNER_TOOL_CACHE"):
        value = (env.get(name) or "").strip()
        if value and os.path.isdir(value) and os.access(value, os.W_OK):
            return os.path.join(value, "imagetrail-state")
    return _home_cache(env)


@dataclass
class Outage:
    """An open breaker: since when deliveries fail, until when jobs keep their reports."""

    opened_at: float
    failed_at: float  # the last failed delivery or probe
    until: float
    cause: str
    kept: int  # reports kept by jobs on this host since the breaker opened


class Breaker:
    def __init__(self, directory: str, url: str, open_seconds: float, probe_seconds: float) -> None:
        key = hashlib.sha256(url.rstrip("/").encode("utf-8")).hexdigest()[:16]
        self.directory = directory
        self.path = os.path.join(directory, f"breaker-{key}.json")
        self.open_seconds = open_seconds
        self.probe_seconds = probe_seconds
        self._probe_prefix = f"breaker-{key}.probe-"

    @classmethod
    def for_backend(cls, env: Mapping[str, str], url: str, open_seconds: float,
                    probe_seconds: float) -> Optional["Breaker"]:
        directory = state_directory(env)
        if directory is None or open_seconds <= 0:
            return None
        return cls(directory, url, open_seconds, probe_seconds)

    # -- reading -----------------------------------------------------------------------
    def outage(self, now: Optional[float] = None) -> Optional[Outage]:
        """The current outage, or None when the breaker is closed (or its file is unusable)."""
        now = time.time() if now is None else now
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.loads(handle.read(MAX_STATE_BYTES))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("v") != STATE_VERSION:
            return None
        opened, failed, until = data.get("openedAt"), data.get("failedAt"), data.get("until")
        kept = data.get("kept", 0)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (opened, failed, until, kept)):
            return None
        # A clock that jumped, or a hand-edited file, must not hold reports back for long.
        if until <= now or until - now > self.open_seconds + 1 or failed > now + 60 or opened > failed:
            return None
        cause = data.get("cause") if isinstance(data.get("cause"), str) else "unknown"
        return Outage(opened_at=float(opened), failed_at=float(failed), until=float(until),
                      cause=cause[:CAUSE_LIMIT], kept=int(kept))

    # -- writing (best effort: a read-only disk only costs the next job a delivery attempt) ----
    def _write(self, outage: Outage) -> None:
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            write_json_atomically(self.path, {"v": STATE_VERSION, "openedAt": outage.opened_at,
                                              "failedAt": outage.failed_at, "until": outage.until, "cause": outage.cause[:CAUSE_LIMIT],
                                              "kept": outage.kept})
        except OSError:
            pass

    def record_failure(self, cause: Optional[str], now: Optional[float] = None) -> Outage:
        """A delivery or probe failed: (re)open for a full period. A failed probe (``cause`` None)
        keeps the cause the delivery saw, which says more than "the health check failed"."""
        now = time.time() if now is None else now
        current = self.outage(now)
        cause = cause or (current.cause if current else "the health check failed")
        outage = Outage(opened_at=current.opened_at if current else now, failed_at=now,
                        until=now + self.open_seconds, cause=cause, kept=(current.kept if current else 0) + 1)
        self._write(outage)
        return outage

    def record_kept(self, outage: Outage) -> None:
        """One more report kept while open (the count is informative; a lost update is harmless)."""
        outage.kept += 1
        self._write(outage)

    def close(self) -> None:
        try:
            os.remove(self.path)
        except OSError:
            pass

    def claim_probe(self, outage: Outage, now: Optional[float] = None) -> bool:
        """True for exactly one job per probe interval, and never within an interval of a failure."""
        now = time.time() if now is None else now
        if now - outage.failed_at < self.probe_seconds:
            return False
        slot = int((now - outage.opened_at) // max(self.probe_seconds, 0.001))
        name = f"{self._probe_prefix}{slot}"
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd = os.open(os.path.join(self.directory, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except OSError:
            return False
        os.close(fd)
        self._forget_old_slots(slot)
        return True

    def _forget_old_slots(self, slot: int) -> None:
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        for name in names:
            tail = name[len(self._probe_prefix):] if name.startswith(self._probe_prefix) else ""
            if tail.isdigit() and int(tail) < slot:
                try:
                    os.remove(os.path.join(self.directory, name))
                except OSError:
                    pass


def probe(url: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
    """Is the backend answering? ``GET /healthz`` within ``timeout`` seconds (standard library only:
    the breaker's path must stay cheap)."""
    import urllib.request

    request = urllib.request.Request(url.rstrip("/") + "/healthz", method="GET",
                                     headers={"User-Agent": "imagetrail-collector"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return 200 <= response.status < 300
    except Exception:  # noqa: BLE001 - any failure means "not back yet"
        return False
