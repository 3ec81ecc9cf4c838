"""Group commit: one writer thread per process stores the reports waiting, in one transaction.

Each ``POST /v1/reports`` hands its validated report to ``IngestWriter.submit`` and waits.
The writer takes every report waiting (up to ``max_batch``), stores them with
``ingest.store_reports`` in ONE transaction, commits, and only then answers each request: a 2xx
always follows the commit. While a batch is being written the next one queues up, so batches grow
with the load and a report costs a fraction of a commit instead of a dozen round trips.

Under load (the last batch held more than one report) it first lingers ``batch_wait`` seconds for
more: the event loop meanwhile parses the requests that the last batch's answers let in, and they
join this batch instead of starting the next. A lone report (an idle server) never waits.

The thread starts on the first report and exits after ``idle_exit`` seconds without one.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from sqlalchemy.orm import Session, sessionmaker

from imagetrail.auth import Principal
from imagetrail.ingest.reports import IngestResult, store_reports

log = logging.getLogger("imagetrail.ingest.reports")

Outcome = Union[IngestResult, BaseException]
# the item (a report Submission, a registry event body...) as ``store`` takes it, who sent it, and its waiter
_Waiting = Tuple[Any, Principal, asyncio.AbstractEventLoop, "asyncio.Future[IngestResult]"]


def _settle(answers: List[Tuple["asyncio.Future[IngestResult]", Outcome]]) -> None:
    for future, outcome in answers:
        if future.done():  # the request was cancelled (client went away)
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class IngestWriter:
    """Group commit for ``store`` (default: collector reports; the registry events use it too):
    ``store(sessions, [(item, principal), ...])`` returns one outcome per item, in order."""

    def __init__(self, sessions: sessionmaker[Session], max_batch: int = 200, batch_wait: float = 0.0,
                 idle_exit: float = 30.0, store: Callable[..., List[Any]] = store_reports):
        self.sessions = sessions
        self.store = store
        self.max_batch = max_batch
        self.batch_wait = batch_wait
        self.idle_exit = idle_exit
        self._queue: "queue.SimpleQueue[_Waiting]" = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running = False
        self.batches = 0  # for diagnostics and tests
        self.largest_batch = 0
        self.lingered = 0
        self._under_load = False  # the last batch held more than one item

    async def submit(self, body: Any, principal: Principal) -> IngestResult:
        """Store ``body`` (what ``store`` takes: a report ``Submission``, an event body...); returns once
        it is committed (or raises why it could not be)."""
        loop = asyncio.get_running_loop()
        future: "asyncio.Future[IngestResult]" = loop.create_future()
        self._queue.put((body, principal, loop, future))
        with self._lock:
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="imagetrail-ingest-writer", daemon=True).start()
        return await future

    def _next_batch(self) -> Optional[List[_Waiting]]:
        try:
            batch = [self._queue.get(timeout=self.idle_exit)]
        except queue.Empty:
            with self._lock:
                if self._queue.empty():
                    self._running = False
                    return None
            return []
        if self.batch_wait and self._under_load:
            self.lingered += 1
            time.sleep(self.batch_wait)
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self._under_load = len(batch) > 1
        return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self._write(batch)

    def _write(self, batch: List[_Waiting]) -> None:
        try:
            outcomes: List[Outcome] = self.store(self.sessions, [(body, principal) for body, principal, _, _ in batch])
        except Exception as exc:  # e.g. the database is unreachable: every request gets the error
            log.debug("ingest batch of %d failed: %s", len(batch), type(exc).__name__)
            outcomes = [exc] * len(batch)
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        by_loop: Dict[asyncio.AbstractEventLoop, List[Tuple["asyncio.Future[IngestResult]", Outcome]]] = {}
        for (_, _, loop, future), outcome in zip(batch, outcomes):
            by_loop.setdefault(loop, []).append((future, outcome))
        for loop, answers in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, answers)
            except RuntimeError:  # that event loop is closed: nobody waits any more
                pass
