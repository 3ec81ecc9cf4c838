"""Migrating a test database down (each migration's test checks its downgrade), and the plan of a statement with
an index a migration adds."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, List

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from imagetrail.store.db import Base, make_engine
from imagetrail.store.migrate import alembic_config, upgrade


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate ``engine``'s database down to ``revision``, in one transaction (the counterpart of
    ``imagetrail.store.migrate.upgrade``, which the server has no use for)."""
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def index_plan(conn: Connection, statement, table: str, index: str) -> str:
    """How the database would run ``statement`` with ``index`` of ``table``: SQLite is made to use it (``INDEXED
    BY`` fails when the statement cannot); PostgreSQL is kept off table scans, as on an estate large enough for
    the index to pay."""
    sql = str(statement.compile(conn, compile_kwargs={"literal_binds": True}))
    if conn.dialect.name == "sqlite":
        sql = sql.replace(f"FROM {table}", f"FROM {table} INDEXED BY {index}", 1)
        return " ".join(str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
    return " ".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {sql}"))


@contextmanager
def migrated(database_url: str, *organizations: str) -> Iterator[Engine]:
    """An engine on ``database_url`` migrated to head, holding these organisations (ids from 1); disposed after."""
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            for number, name in enumerate(organizations, 1):
                conn.execute(text("INSERT INTO organizations (id, system, name) VALUES (:id, 'github', :name)"),
                             {"id": number, "name": name})
        yield engine
    finally:
        engine.dispose()


def index_differences(conn: Connection, *indexes: str) -> List[object]:
    """Where the database and the models differ on these indexes; PostgreSQL only (SQLite's reflection cannot
    compare a DESC index, so it reports one that matches)."""
    if conn.dialect.name != "postgresql":
        return []
    return [d for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)
            if any(index in repr(d) for index in indexes)]
