"""Set-based statements for the ingest hot path: many rows per statement, one statement text.

On PostgreSQL the rows travel as ONE JSON parameter and the statement is
``INSERT .. SELECT .. FROM json_populate_recordset(NULL::table, $1)``: its text is the
same whatever the number of rows, so psycopg parses it once and PostgreSQL prepares it
once, and encoding the rows is one call of the C JSON encoder. Measured alternatives cost
more CPU than everything else on this path: a multi-row ``VALUES`` list has a different,
long text for every row count (psycopg re-parses such queries on every execution), and
one array parameter per column goes through psycopg's pure-Python array dumpers.
SQLite runs in-process, so SQLAlchemy's own multi-row statements are cheap there.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any, Callable, Iterable, List, Mapping, Optional, Sequence, Tuple

import orjson
from sqlalchemy import Table, select, tuple_
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

Rows = Sequence[Mapping[str, Any]]


def _postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def execute_fixed(conn: Connection, sql: str, params: Tuple[Any, ...]) -> Any:
    """PostgreSQL only: run the fixed statement text ``sql`` (psycopg ``%s`` placeholders) on the psycopg
    connection under ``conn`` (same transaction) and return its cursor.

    These fixed statements skip SQLAlchemy's per-statement work (result metadata...), which cost
    more CPU than the statement did in PostgreSQL; errors are translated the way SQLAlchemy does
    it (DBAPIError subclasses), so callers see no difference. A lost connection is handled as
    SQLAlchemy handles it for its own statements: the pool's connections made before now are
    replaced on their next checkout (a restart or pg_terminate_backend took them all), and this
    one is invalidated.
    """
    import psycopg

    try:
        return conn.connection.driver_connection.execute(sql, params)
    except psycopg.Error as exc:
        lost = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, None)
        if lost:
            # Pool._invalidate is what SQLAlchemy's Connection calls on a disconnect; no public call
            # marks the pool's older connections stale without closing the ones in use.
            conn.engine.pool._invalidate(conn.connection, exc, _checkin=False)
            conn.invalidate(exc)
        raise DBAPIError.instance(sql, params, exc, psycopg.Error, connection_invalidated=lost,
                                  dialect=conn.dialect) from exc


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


def _rows_json(rows: Iterable[Mapping[str, Any]]) -> str:
    rows = list(rows)
    try:
        # orjson: the same text (datetimes as isoformat() writes them) for a tenth of the CPU; reports
        # bodies are most of it
        return orjson.dumps(rows).decode()
    except TypeError:  # what orjson refuses (an integer past 64 bits...): the standard encoder decides
        return json.dumps(rows, default=_json_value, separators=(",", ":"))


@lru_cache(maxsize=64)
def _insert_sql(quote: Callable[[str], str], table: str, columns: Tuple[str, ...],
                skip_conflicts_on: Optional[Tuple[str, ...]], returning: Tuple[str, ...]) -> str:
    names = ", ".join(quote(name) for name in columns)
    sql = (f"INSERT INTO {quote(table)} ({names}) SELECT {names} "
           f"FROM json_populate_recordset(NULL::{quote(table)}, %s::json)")
    if skip_conflicts_on:
        sql += f" ON CONFLICT ({', '.join(quote(name) for name in skip_conflicts_on)}) DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(quote(name) for name in returning)}"
    return sql


@lru_cache(maxsize=64)
def _select_sql(quote: Callable[[str], str], table: str, key_columns: Tuple[str, ...],
                columns: Tuple[str, ...]) -> str:
    # One index lookup per key, whatever the table's statistics say: a LATERAL subquery that OFFSET 0
    # keeps from being flattened runs as a nested loop. As a plain join or IN, the planner took a
    # sequential scan of a table that grew since it was last analysed (every batch of a fresh install).
    match = " AND ".join(f"{quote(table)}.{quote(name)} = wanted.{quote(name)}" for name in key_columns)
    return (f"SELECT found.* FROM json_populate_recordset(NULL::{quote(table)}, %s::json) AS wanted, "
            f"LATERAL (SELECT {', '.join(quote(name) for name in columns)} FROM {quote(table)} "
            f"WHERE {match} OFFSET 0) AS found")


def insert_many(conn: Connection, table: Table, rows: Rows, *, skip_conflicts_on: Optional[Sequence[str]] = None,
                returning: Sequence[str] = ()) -> List[Any]:
    """Insert ``rows`` (dicts with the same keys) in one statement; rows whose
    ``skip_conflicts_on`` key already exists are skipped (and not returned)."""
    if not rows:
        return []
    columns = list(rows[0])
    if not _postgres(conn):
        stmt = sqlite.insert(table)
        if skip_conflicts_on:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(skip_conflicts_on))
        # RETURNING makes SQLAlchemy send one multi-row INSERT instead of one per row.
        stmt = stmt.returning(*(table.c[name] for name in returning or [table.primary_key.columns[0].name]))
        found = conn.execute(stmt, list(rows)).all()
        return found if returning else []
    quote = conn.dialect.identifier_preparer.quote
    sql = _insert_sql(quote, table.name, tuple(columns), tuple(skip_conflicts_on) if skip_conflicts_on else None,
                      tuple(returning))
    cursor = execute_fixed(conn, sql, (_rows_json(rows),))
    return cursor.fetchall() if returning else []


def select_by_keys(conn: Connection, table: Table, key_columns: Sequence[str], keys: Sequence[Tuple[Any, ...]],
                   columns: Sequence[str]) -> List[Any]:
    """``columns`` of the rows whose ``key_columns`` equal one of ``keys`` (distinct keys of a unique index:
    a row is returned once per key that matches it)."""
    if not keys:
        return []
    if not _postgres(conn):
        where = tuple_(*(table.c[name] for name in key_columns)).in_(list(keys)) if len(key_columns) > 1 \
            else table.c[key_columns[0]].in_([key[0] for key in keys])
        return conn.execute(select(*(table.c[name] for name in columns)).where(where)).all()
    sql = _select_sql(conn.dialect.identifier_preparer.quote, table.name, tuple(key_columns), tuple(columns))
    return execute_fixed(conn, sql, (_rows_json(dict(zip(key_columns, key)) for key in keys),)).fetchall()


def rows_source(conn: Connection, table: Table, columns: Sequence[str]) -> str:
    """SQL of a FROM item that holds the rows passed as the statement's one JSON parameter (a list of
    objects with ``columns``, typed like ``table``'s): for ``returned_with_rows``."""
    if _postgres(conn):
        return f"json_populate_recordset(NULL::{conn.dialect.identifier_preparer.quote(table.name)}, %s::json)"
    quote = conn.dialect.identifier_preparer.quote
    picks = ", ".join(f"json_extract(value, '$.{name}') AS {quote(name)}" for name in columns)
    return f"(SELECT {picks} FROM json_each(?))"


def returned_with_rows(conn: Connection, sql: str, rows: Rows) -> List[Tuple[Any, ...]]:
    """Run ``sql``, whose one parameter is a ``rows_source``, with ``rows``; returns the rows its RETURNING
    clause returned."""
    result = execute_fixed(conn, sql, (_rows_json(rows),)) if _postgres(conn) else \
        conn.exec_driver_sql(sql, (_rows_json(rows),))
    return [tuple(row) for row in result.fetchall()]
