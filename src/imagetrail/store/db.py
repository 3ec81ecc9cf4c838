"""Database engine and session handling (SQLAlchemy 2)."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator, Optional

from sqlalchemy import DateTime, TypeDecorator, create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker


class Base(DeclarativeBase):
    """Declarative base for every ImageTrail table (pipeline side, cloud side, auth)."""


class UTCDateTime(TypeDecorator):
    """A point in time, stored as UTC on every database; read back aware, in UTC.

    SQLite has no time zone type: SQLAlchemy writes an aware datetime's wall-clock fields and
    drops its offset, so ``21:00:56-04:00`` would read back as ``21:00:56`` UTC, 4 h wrong.
    Every time column uses this type (tests/server/test_times.py checks it); naive values are
    taken as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Optional[datetime], dialect: Any) -> Optional[datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        try:
            return value.astimezone(timezone.utc)
        except OverflowError:  # within hours of the calendar's ends: clamp to them
            return (datetime.max if value.year > 1 else datetime.min).replace(tzinfo=timezone.utc)

    def process_result_value(self, value: Optional[datetime], dialect: Any) -> Optional[datetime]:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def as_utc(value: Optional[datetime]) -> Optional[datetime]:
    """A time read without its column's type (a label, an aggregate, a raw row): naive means UTC."""
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


def is_sqlite(database_url: str) -> bool:
    return make_url(database_url).get_backend_name() == "sqlite"


def make_engine(database_url: str) -> Engine:
    if is_sqlite(database_url):
        engine = create_engine(database_url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # pragma: no cover - exercised by every SQLite test
            # Let SQLAlchemy's "begin" event below start transactions instead of the driver.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection):  # pragma: no cover - exercised by every SQLite test
            # IMMEDIATE takes the write lock up front (waiting up to the busy timeout): a deferred
            # transaction that read first and writes later fails at once with "database is locked"
            # when another writer committed in between, which concurrent requests would hit.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # pool_pre_ping: after a PostgreSQL restart or pg_terminate_backend, stale pooled
    # connections are replaced instead of failing the next request.
    return create_engine(database_url, pool_size=10, max_overflow=20, pool_pre_ping=True, pool_timeout=10)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: committed whole, or rolled back whole."""
    with factory() as session, session.begin():
        yield session
