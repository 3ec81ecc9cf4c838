"""Attribution off the request path: read each newly pushed digest from its registry, keep its claims.

``POST /v1/registry-events`` stores the events and a ``registry_artifacts`` row per new digest
(status ``pending``), answers, and wakes this worker. The queue is the table (``ingest.attribution_queue``),
so nothing is lost on a restart and several server processes can share it: a row is claimed by a
conditional update (``pending``/``failed`` -> ``working``) and retried with backoff when the registry fails.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta
from pathlib import Path
from typing import Optional

from sqlalchemy.orm import Session, sessionmaker

from imagetrail.ingest import attribution_queue as queue
from imagetrail.remote.oci_registry import RegistryClient, RegistryError, RegistryNotAllowed
from imagetrail.services.registry_inspect import Inspector
from imagetrail.settings import Settings

log = logging.getLogger("imagetrail.registry")

MAX_ATTEMPTS = 5
RETRY_BASE = timedelta(seconds=30)
CLAIM_LEASE = timedelta(minutes=5)  # a "working" row older than this was left by a stopped process
POLL_SECONDS = 5.0
BATCH = 10
MAX_QUEUE_ERRORS = 3  # then the thread stops; the next registry event (or a restart) starts it again


def registry_client(settings: Settings) -> RegistryClient:
    # Without IMAGETRAIL_REGISTRY_AUTH_FILE the server is anonymous: it never reads its own
    # user's ~/.docker/config.json.
    auth_file = Path(settings.registry_auth_file) if settings.registry_auth_file else Path(os.devnull)
    return RegistryClient(timeout=settings.registry_timeout_seconds, config_path=auth_file,
                          allowed=settings.registries, insecure=settings.insecure_registries)


class AttributionWorker:
    def __init__(self, sessions: sessionmaker[Session], settings: Settings):
        self.sessions = sessions
        self.settings = settings
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._stop = False

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop = False
                self._thread = threading.Thread(target=self._run, name="imagetrail-attribution", daemon=True)
                self._thread.start()

    def wake(self) -> None:
        self.start()
        self._wake.set()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()

    def _requeue_allowed(self) -> None:
        """Digests refused because their registry was not allowed are read once it is."""
        if not self.settings.registries:
            return
        queue.requeue_not_allowed(self.sessions, self.settings.registries)

    def _run(self) -> None:
        errors = 0
        try:
            self._requeue_allowed()
        except Exception as exc:  # the database is down, say: the queue loop below reports it
            log.debug("attribution: could not requeue (%s)", type(exc).__name__)
        while not self._stop:
            self._wake.clear()
            try:
                done = self.process_due()
                errors = 0
            except Exception as exc:  # the database is down, say
                errors += 1
                if errors >= MAX_QUEUE_ERRORS:
                    log.warning("attribution paused: cannot read its queue (%s); it resumes with the next "
                                "registry event or restart", type(exc).__name__)
                    return
                done = 0
            if not done:
                self._wake.wait(POLL_SECONDS)

    def process_due(self) -> int:
        """Attribute the digests that are due; returns how many were handled."""
        claimed = queue.claim_due(self.sessions, limit=BATCH, max_attempts=MAX_ATTEMPTS, lease=CLAIM_LEASE)
        if not claimed:
            return 0
        client = registry_client(self.settings)
        inspector = Inspector(client)
        for row_id in claimed:
            self._attribute(inspector, queue.queued_digest(self.sessions, row_id))
        return len(claimed)

    def _attribute(self, inspector: Inspector, target: queue.QueuedDigest) -> None:
        registry, repository, digest = target.registry, target.repository, target.digest
        status, detail, claims = "done", None, []
        try:
            inspector.client.check_allowed(registry)
            claims = inspector.claims(registry, repository, digest)
        except RegistryNotAllowed as exc:
            status, detail = "not-allowed", str(exc)
        except RegistryError as exc:
            status, detail = "failed", str(exc)[:1000]
        except Exception as exc:  # a malformed image must not stop the worker
            log.exception("attribution of %s/%s@%s failed", registry, repository, digest)
            status, detail = "failed", f"{type(exc).__name__}: {str(exc)[:500]}"
        retry_after = RETRY_BASE * (2 ** (target.attempts - 1)) if status == "failed" else None
        queue.finish(self.sessions, target.row_id, status, detail, claims, retry_after)
        if status != "done":
            log.info("attribution of %s/%s@%s: %s", registry, repository, digest, detail)
