"""Database engine and session handling (SQLAlchemy 2)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator, Optional, Union

from sqlalchemy import DateTime, TypeDecorator, create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DisconnectionError
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


def connection_of(target: Union[Connection, Session]) -> Connection:
    """The connection a session's transaction runs on, or ``target`` itself when it is a connection."""
    return target.connection() if isinstance(target, Session) else target


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
    engine = create_engine(database_url, pool_size=10, max_overflow=20, pool_timeout=10)
    _ping_when_idle(engine)
    _without_jit(engine)
    return engine


def _without_jit(engine: Engine) -> None:
    """Each PostgreSQL connection runs with ``jit = off``. The explorer's statements are short, but their
    per-row subplans make PostgreSQL's cost estimates pass ``jit_above_cost``, and it then compiled for
    ~9 ms a count that ran in 35 ms (a reader's unfiltered count at 100,000 containers), as it once spent
    ~200 ms on the images-not-running statement. Set per connection, not in the URL: a URL's own
    ``options`` (a search_path) stays as given."""

    @event.listens_for(engine, "connect")
    def _session_settings(dbapi_connection, _record):
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True  # takes effect now; no transaction left open
        dbapi_connection.execute("SET jit = off")
        dbapi_connection.autocommit = autocommit


# A pooled connection idle this long is pinged before use. SQLAlchemy's pool_pre_ping pings on every
# checkout: a round trip (and ~0.2 ms of CPU) per request that a connection back from its last request
# moments ago does not need. After a PostgreSQL restart or pg_terminate_backend the first statement on
# such a fresh-looking connection fails instead and the pool's older connections are replaced; an ingest batch
# is written again on a new one (ingest/reports.py), another request answers 503 (retryable).
IDLE_BEFORE_PING = 2.0


def _ping_when_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection, record):
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy):
        checked_in = record.info.get("checked_in")
        if checked_in is None or time.monotonic() - checked_in < IDLE_BEFORE_PING:
            return  # just connected, or back from a request moments ago
        try:
            engine.dialect.do_ping(dbapi_connection)  # what pool_pre_ping runs (leaves no transaction open)
        except Exception as exc:  # any driver error: this connection is gone, the pool takes another
            raise DisconnectionError(str(exc)) from exc


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: committed whole, or rolled back whole."""
    with factory() as session, session.begin():
        yield session
