"""The hard deadline: whatever blocks (a daemon or backend that accepts and never answers,
a library without a timeout), the step ends in time, keeps any undelivered report, and
prints one warning line."""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, Mapping, Optional

from imagetrail.collector.console import Console
from imagetrail.collector.deadline import Deadline


class Watchdog:
    def __init__(self, deadline: Deadline, console: Console, env: Mapping[str, str]) -> None:
        self._deadline = deadline
        self._console = console
        self._env = env
        self._lock = threading.Lock()
        self._done = False
        self._timer: Optional[threading.Timer] = None
        self.pending_report: Optional[Dict[str, Any]] = None  # built but not yet delivered

    def start(self) -> None:
        self._timer = threading.Timer(self._deadline.remaining(), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def finish(self) -> bool:
        """Called once the step is done; False if the watchdog already ended the step."""
        with self._lock:
            if self._done:
                return False
            self._done = True
        if self._timer is not None:
            self._timer.cancel()
        return True

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        message = f"stopped after the {self._deadline.seconds:g} s deadline (IMAGETRAIL_DEADLINE_SECONDS)"
        if self.pending_report is not None:
            from imagetrail.collector.fallback import keep_report

            try:
                message += "; " + keep_report(self.pending_report, self._env, self._console)
            except OSError as exc:
                message += f"; the report could not be kept either: {exc}"
        self._console.warning(message)
        os._exit(0)
