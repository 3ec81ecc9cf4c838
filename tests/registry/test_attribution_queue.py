"""The attribution queue (``ingest.attribution_queue``) on a real database: claims are exclusive,
a failed row waits for its backoff, attempts are capped, and a row left ``working`` is taken back."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from imagetrail.ingest import attribution_queue as queue
from imagetrail.ingest.registry_events import store_event_batches
from imagetrail.parsers.registry_events import PushEvent
from imagetrail.store.db import make_engine, make_sessionmaker, transaction
from imagetrail.store.migrate import upgrade
from imagetrail.store.models.registry import RegistryArtifact

LEASE = timedelta(minutes=5)


@pytest.fixture
def sessions(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


def _push(n: int, registry: str = "registry.example") -> PushEvent:
    return PushEvent(event_id=f"e{n}", format="distribution", registry=registry, repository="team/app", tag="",
                     digest="sha256:" + f"{n:x}" * 64, occurred_at=datetime.now(timezone.utc))


def _claim(sessions, max_attempts: int = 5):
    return queue.claim_due(sessions, limit=10, max_attempts=max_attempts, lease=LEASE)


def test_a_row_is_claimed_once_then_waits_for_its_backoff(sessions):
    store_event_batches(sessions, [([_push(1), _push(2)], "test")])
    claimed = _claim(sessions)
    assert len(claimed) == 2
    assert _claim(sessions) == []  # working and within its lease: nobody else takes them
    first = queue.queued_digest(sessions, claimed[0])
    assert (first.registry, first.repository, first.attempts) == ("registry.example", "team/app", 1)

    queue.finish(sessions, claimed[0], "failed", "503", [], retry_after=timedelta(seconds=30))
    queue.finish(sessions, claimed[1], "done", None, [])
    assert _claim(sessions) == []  # the failed row is not due before its backoff
    with transaction(sessions) as session:
        session.execute(update(RegistryArtifact).where(RegistryArtifact.id == claimed[0])
                        .values(next_attempt_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
    assert _claim(sessions, max_attempts=2) == [claimed[0]]
    assert queue.queued_digest(sessions, claimed[0]).attempts == 2
    queue.finish(sessions, claimed[0], "failed", "503", [], retry_after=timedelta(0))
    assert _claim(sessions, max_attempts=2) == []  # out of attempts


def test_a_row_left_working_by_a_stopped_process_is_claimed_again(sessions):
    store_event_batches(sessions, [([_push(3)], "test")])
    (row_id,) = _claim(sessions)
    with transaction(sessions) as session:  # the claiming process died: its lease ran out
        session.execute(update(RegistryArtifact).where(RegistryArtifact.id == row_id)
                        .values(next_attempt_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
    assert _claim(sessions) == [row_id]


def test_only_rows_of_a_now_allowed_registry_are_requeued(sessions):
    store_event_batches(sessions, [([_push(4, "allowed.example"), _push(5, "other.example")], "test")])
    for row_id in _claim(sessions):
        queue.finish(sessions, row_id, "not-allowed", "not in IMAGETRAIL_REGISTRIES", [])
    assert _claim(sessions) == []
    queue.requeue_not_allowed(sessions, ["allowed.example"])
    (row_id,) = _claim(sessions)
    assert queue.queued_digest(sessions, row_id).registry == "allowed.example"
