"""The connection pool pings a connection only after it sat idle, and replaces one whose backend is gone."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from imagetrail.store import db


def _backend_pid(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()


def _count_pings(engine: sa.Engine) -> list:
    pings: list = []
    original = engine.dialect.do_ping
    engine.dialect.do_ping = lambda dbapi_connection: pings.append(1) or original(dbapi_connection)
    return pings


@pytest.mark.postgres
def test_a_connection_back_from_a_request_moments_ago_is_not_pinged(postgres_url):
    engine = db.make_engine(postgres_url)
    pings = _count_pings(engine)
    first = _backend_pid(engine)
    assert [_backend_pid(engine) for _ in range(5)] == [first] * 5
    assert pings == []  # no round trip per request
    engine.dispose()


@pytest.mark.postgres
def test_an_idle_connection_whose_backend_was_terminated_is_replaced(postgres_url, monkeypatch):
    engine = db.make_engine(postgres_url)
    pings = _count_pings(engine)
    stale = _backend_pid(engine)
    admin = sa.create_engine(postgres_url.split("?")[0], isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": stale}).scalar_one() is True
    admin.dispose()
    monkeypatch.setattr(db, "IDLE_BEFORE_PING", 0.0)  # the pooled connection now counts as idle
    fresh = _backend_pid(engine)
    assert pings and fresh != stale  # pinged, found dead, replaced: the caller never saw the error
    engine.dispose()


@pytest.mark.postgres
def test_connections_run_without_jit_and_keep_the_urls_own_options(postgres_url):
    """JIT is off on every pooled connection (set when it connects), the URL's search_path still applies, and the
    setting leaves no transaction open on the new connection."""
    from psycopg.pq import TransactionStatus

    engine = db.make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.connection.driver_connection.info.transaction_status == TransactionStatus.IDLE
            assert conn.execute(sa.text("SHOW jit")).scalar_one() == "off"
            schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
        assert postgres_url.endswith(f"search_path%3D{schema}")
        with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            assert conn.execute(sa.text("SHOW jit")).scalar_one() == "off"
    finally:
        engine.dispose()
