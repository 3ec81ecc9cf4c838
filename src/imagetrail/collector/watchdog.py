"""The hard deadline: whatever blocks (a daemon or backend that accepts and never answers,
a library without a timeout), the step ends in time, keeps any undelivered report, and
prints one warning line."""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, List, Mapping, Optional

from imagetrail.collector.console import Console
from imagetrail.collector.deadline import Deadline

# Both within the 2 s the Node shim leaves between the collector's deadline and its own kill.
FINAL_GRACE_SECONDS = 0.5  # for the step's last lines, when the deadline strikes while they are written
KEEP_SECONDS = 1.0  # keeping the report can block too (a job summary on a hung file system)


class Watchdog:
    def __init__(self, deadline: Deadline, console: Console, env: Mapping[str, str]) -> None:
        self._deadline = deadline
        self._console = console
        self._env = env
        self._lock = threading.Lock()
        self._done = False
        self._finishing = False
        self._finished = threading.Event()
        self._timer: Optional[threading.Timer] = None
        self.pending_report: Optional[Dict[str, Any]] = None  # built but not yet delivered

    def start(self) -> None:
        self._timer = threading.Timer(self._deadline.remaining(), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def finishing(self) -> bool:
        """The step is about to keep the report and print its last warning. Should the deadline
        strike meanwhile, the watchdog waits a moment for those lines instead of printing a second
        warning (or keeping the report twice). False if the watchdog has already ended the step."""
        with self._lock:
            if self._done:
                return False
            self._finishing = True
            return True

    def finish(self) -> bool:
        """Called once the step is done; False if the watchdog already ended the step."""
        with self._lock:
            if self._done:
                return False
            self._done = True
        self._finished.set()
        if self._timer is not None:
            self._timer.cancel()
        return True

    def _expire(self) -> None:
        with self._lock:
            finishing = self._finishing and not self._done
        if finishing and self._finished.wait(FINAL_GRACE_SECONDS):
            return
        with self._lock:
            if self._done:
                return
            self._done = True
        message = f"stopped after the {self._deadline.seconds:g} s deadline (IMAGETRAIL_DEADLINE_SECONDS)"
        if self.pending_report is not None:
            message += "; " + self._keep(self.pending_report)
        self._console.warning(message)
        os._exit(0)

    def _keep(self, report: Dict[str, Any]) -> str:
        from imagetrail.collector.fallback import keep_report

        outcome: List[str] = []

        def keep() -> None:
            try:
                outcome.append(keep_report(report, self._env, self._console))
            except OSError as exc:
                outcome.append(f"the report could not be kept either: {exc}")

        worker = threading.Thread(target=keep, daemon=True)
        worker.start()
        worker.join(KEEP_SECONDS)
        return outcome[0] if outcome else "keeping the report did not finish in time either"
