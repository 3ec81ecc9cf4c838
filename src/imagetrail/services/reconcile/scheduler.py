"""When reconcile passes run: at startup (after the backend's own downtime), every
``reconcile_interval_seconds``, and on the first report after ``reconcile_gap_seconds`` without
one (collectors were probably failing meanwhile). A background thread per process; the lease
makes sure only one process of all those sharing the database runs a pass at a time.

Startup and gap passes are due "from a moment" (startup: when ``imagetrail serve`` started,
recorded in the database before its workers start): any pass that started after it, in this
process or another, satisfies them, so the workers of one ``serve --workers N`` run one startup
pass, and a request that meets a pass started earlier is retried until one starts after it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import List, Optional

from sqlalchemy.orm import Session, sessionmaker

from imagetrail.services.reconcile.runner import Reconciler, SourceOutcome
from imagetrail.settings import Settings
from imagetrail.store import lease

log = logging.getLogger("imagetrail.services.reconcile")

LEASE_SECONDS = 600.0  # a holder that died blocks reconcile this long at most (passes are idempotent anyway)
RETRY_SECONDS = 5.0  # a due pass that could not start (another process holds the lease) is tried again


class ReconcileScheduler:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.reconciler = Reconciler(settings, sessions)
        self.holder = lease.holder_id()
        self.passes = 0  # passes this process ran (diagnostics, tests)
        self.last_outcomes: List[SourceOutcome] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._woken_at = time.time()
        self._last_report = time.monotonic()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="imagetrail-reconcile", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def note_report(self) -> None:
        """Called for every report received: the first one after a quiet gap wakes a pass."""
        now = time.monotonic()
        quiet, self._last_report = now - self._last_report, now
        if quiet > self.settings.reconcile_gap_seconds:
            self._woken_at = time.time()
            self._wake.set()

    def _loop(self) -> None:
        due: Optional[float] = self._startup_moment()
        interval = self.settings.reconcile_interval_seconds
        scheduled = time.monotonic() + interval
        while not self._stop.is_set():
            try:
                if due is not None:
                    self.run_pass(max(0.0, time.time() - due))
                    started = lease.last_started(self.sessions)
                    if started is not None and started >= due:
                        due = None
                elif interval > 0 and time.monotonic() >= scheduled:
                    self.run_pass(interval * 0.9)
                    scheduled = time.monotonic() + interval
            except Exception:  # noqa: BLE001 - e.g. the database is down: retry later
                log.exception("reconcile scheduling failed; retrying")
            if due is not None:
                timeout: Optional[float] = RETRY_SECONDS
            else:
                timeout = max(0.0, scheduled - time.monotonic()) if interval > 0 else None
            if self._wake.wait(timeout):
                self._wake.clear()
                due = due if due is not None else self._woken_at

    def _startup_moment(self) -> float:
        """The startup pass must start after this: when `imagetrail serve` started (shared by its
        workers, which then run one pass between them), else when this process did."""
        now = time.time()
        try:
            boot = lease.boot_time(self.sessions)
        except Exception:  # noqa: BLE001 - the database is not reachable yet: this process's own start
            return now
        return boot if boot is not None and now - 600 < boot <= now else now

    def run_pass(self, spacing: float) -> bool:
        """One pass if this process gets the lease and no pass started in the last ``spacing`` seconds;
        True if it ran."""
        try:
            if not lease.acquire(self.sessions, self.holder, LEASE_SECONDS, spacing):
                return False
            try:
                self.last_outcomes = self.reconciler.run_once()
                self.passes += 1
            finally:
                lease.release(self.sessions, self.holder)
        except Exception:  # noqa: BLE001 - the thread must survive a database outage and retry later
            log.exception("reconcile pass failed; the next one retries")
            return False
        return True
