"""Only one process reconciles at a time: a lease row, taken with one conditional UPDATE.

Works the same on SQLite and PostgreSQL (the UPDATE is atomic on both), and across every
``serve --workers`` process and host sharing the database. The lease expires, so a holder that
died does not block reconcile for longer than ``ttl``; ``spacing`` keeps the processes from
each running a pass right after another one finished. A second row (``boot``) holds when the
latest ``imagetrail serve`` started, so that its workers run ONE startup pass between them.

A storage helper (like ``store.bulk``), so the reconcile scheduler in ``services`` takes the lease
without touching the table itself.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import Optional

from sqlalchemy import and_, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from imagetrail.store.bulk import insert_many
from imagetrail.store.models.reconcile import ReconcileLease

T_LEASES = ReconcileLease.__table__
NAME = "reconcile"
BOOT = "boot"  # started_at: when the latest `imagetrail serve` started (before its workers)


def holder_id() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire(sessions: sessionmaker[Session], holder: str, ttl: float, spacing: float,
            now: Optional[float] = None) -> bool:
    """Take the lease unless another holder has it, or a pass started less than ``spacing`` s ago."""
    now = time.time() if now is None else now
    engine = sessions.kw["bind"]
    with engine.begin() as conn:
        insert_many(conn, T_LEASES, [{"name": NAME, "holder": None, "expires_at": 0.0, "started_at": None}],
                    skip_conflicts_on=("name",))
    with engine.begin() as conn:
        taken = conn.execute(
            update(T_LEASES)
            .where(T_LEASES.c.name == NAME, T_LEASES.c.expires_at < now,
                   or_(T_LEASES.c.started_at.is_(None), T_LEASES.c.started_at <= now - spacing))
            .values(holder=holder, expires_at=now + ttl, started_at=now))
        return taken.rowcount == 1


def release(sessions: sessionmaker[Session], holder: str) -> None:
    with sessions.kw["bind"].begin() as conn:
        conn.execute(update(T_LEASES).where(and_(T_LEASES.c.name == NAME, T_LEASES.c.holder == holder))
                     .values(holder=None, expires_at=0.0))


def last_started(sessions: sessionmaker[Session]) -> Optional[float]:
    """When the latest pass (of any process) started, in epoch seconds."""
    with sessions() as session:
        return session.execute(select(T_LEASES.c.started_at).where(T_LEASES.c.name == NAME)).scalar()


def mark_boot(engine: Engine, now: Optional[float] = None) -> None:
    """``imagetrail serve`` starts: its workers owe one startup pass that starts after this moment."""
    now = time.time() if now is None else now
    with engine.begin() as conn:
        insert_many(conn, T_LEASES, [{"name": BOOT, "holder": None, "expires_at": 0.0, "started_at": None}],
                    skip_conflicts_on=("name",))
        conn.execute(update(T_LEASES).where(T_LEASES.c.name == BOOT).values(started_at=now))


def boot_time(sessions: sessionmaker[Session]) -> Optional[float]:
    with sessions() as session:
        return session.execute(select(T_LEASES.c.started_at).where(T_LEASES.c.name == BOOT)).scalar()
