"""Migration 0014 on SQLite and PostgreSQL: the single-column indexes that a unique constraint covers are gone,
each lookup they served is still an index lookup, the models match, and downgrade restores them."""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from imagetrail.store.db import Base, make_engine
from imagetrail.store.migrate import upgrade
from tests.support.migrations import downgrade

COVERED = importlib.import_module("imagetrail.store.migrations.versions.0014_drop_covered_indexes").COVERED


def _indexes(conn, table: str) -> dict:
    found = {i["name"]: i["column_names"] for i in sa.inspect(conn).get_indexes(table)}
    for unique in sa.inspect(conn).get_unique_constraints(table):
        found[unique["name"] or "unique"] = unique["column_names"]
    return found


def _lookup_plan(conn, table: str, column: str) -> str:
    sql = f"SELECT * FROM {table} WHERE {column} = '1'"
    if conn.dialect.name == "sqlite":
        return " ".join(str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    return " ".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + sql))


def test_0014_drops_the_covered_indexes_keeps_their_lookups_and_downgrades(database_url):
    engine = make_engine(database_url)
    tables = sorted({table for _, table, _ in COVERED})
    try:
        upgrade(engine)
        with engine.begin() as conn:
            for index, table, column in COVERED:
                indexes = _indexes(conn, table)
                assert index not in indexes
                # the covering unique constraint: its first column is the dropped index's column
                assert any(name != index and columns[0] == column for name, columns in indexes.items()), indexes
                plan = _lookup_plan(conn, table, column)
                assert "USING" in plan.upper() or "Index" in plan, plan  # an index, not a table scan
                assert "Seq Scan" not in plan and "SCAN " + table not in plan, plan
            diff = [d for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)
                    if any(index in repr(d) for index, _, _ in COVERED)]
        assert diff == []
        downgrade(engine, "0013")
        with engine.connect() as conn:
            restored = {name for table in tables for name in _indexes(conn, table)}
        assert {index for index, _, _ in COVERED} <= restored
    finally:
        engine.dispose()
