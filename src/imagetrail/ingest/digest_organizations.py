"""Keep ``digest_organizations`` (which organisations pushed a digest or a relative of it) equal to what
``pushes`` and ``image_relations`` say, for the digests a write touched.

Every write of pushes (report ingest, a claimed report replaced) or of relations (collector, registry,
scanner) calls ``refresh_digest_organizations`` in its own transaction, so a reader sees a new push or
relation as soon as it is committed. The rows are recomputed from the source tables, not patched: the same
call serves an insert and a delete. Missing rows are inserted skipping conflicts, so two reports pushing one
digest at once both land; ``rebuild_digest_organizations`` rewrites everything (bulk loads, repair).

``running_containers.organization_ids`` copies these rows per container, so an organisation-scoped reader
filters containers on a column instead of probing this table for each. It stays exact under concurrency:

* the write paths here edit it in place (add or remove one organisation id) in the same transaction, on rows
  already filled; such edits commute, since each applies to the newest version of the row;
* a sync writes its containers with NULL (the reader's condition looks a NULL row up in this table), and
  ``fill_container_organizations`` fills them afterwards in its own transaction;
* a copy of more than ``ORGANIZATION_COPY_MAX`` organisations is ``ORGANIZATION_COPY_FULL`` instead, looked up
  in this table like a NULL one, and the edits leave it so (an index entry has a size limit);
* on PostgreSQL the fill takes ``VISIBILITY_LOCK`` exclusively and the editors take it shared before they write
  any running_containers row, so a fill never reads this table while an edit it cannot see is in flight.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Dict, Iterable, Iterator, Optional, Sequence, Set, Tuple, Union

from sqlalchemy import (
    Connection,
    String,
    case,
    cast,
    delete,
    func,
    literal,
    or_,
    select,
    tuple_,
    union,
    update,
)
from sqlalchemy.orm import Session

from imagetrail.store.bulk import execute_fixed, insert_many, returned_with_rows, rows_source
from imagetrail.store.db import connection_of
from imagetrail.store.models.cloud import (
    ORGANIZATION_COPY_FULL,
    ORGANIZATION_COPY_MAX,
    RunningContainer,
)
from imagetrail.store.models.pipeline import (
    DigestOrganization,
    ImageRelation,
    Job,
    Pipeline,
    Project,
    Push,
    Run,
)

CHUNK = 500
# pg_advisory_xact_lock key: the fill of running_containers.organization_ids against the edits (module docstring).
VISIBILITY_LOCK = 0x1A6E_0012


def _pushed_by():
    """pushes joined up to the project that names the pushing organisation."""
    return (
        Push.__table__.join(Job, Job.id == Push.job_id)
        .join(Run, Run.id == Job.run_id)
        .join(Pipeline, Pipeline.id == Run.pipeline_id)
        .join(Project, Project.id == Pipeline.project_id)
    )


def _pairs(digests: Optional[Sequence[str]]):
    """``(digest, organization_id)`` pairs: the digest pushed as itself, or an index / platform relative of it
    pushed; for ``digests`` only, or for every digest when None."""
    pushed_by = _pushed_by()
    itself = select(Push.digest.label("digest"), Project.organization_id).select_from(pushed_by)
    via_index = select(ImageRelation.manifest_digest, Project.organization_id).select_from(
        pushed_by.join(ImageRelation, ImageRelation.index_digest == Push.digest)
    )
    via_manifest = select(ImageRelation.index_digest, Project.organization_id).select_from(
        pushed_by.join(ImageRelation, ImageRelation.manifest_digest == Push.digest)
    )
    if digests is None:
        itself = itself.where(Push.digest.is_not(None))
    else:
        itself = itself.where(Push.digest.in_(digests))
        via_index = via_index.where(ImageRelation.manifest_digest.in_(digests))
        via_manifest = via_manifest.where(ImageRelation.index_digest.in_(digests))
    return union(itself, via_index, via_manifest)


def _with_relatives(conn: Connection, digests: Sequence[str]) -> Set[str]:
    found = set(digests)
    for index_digest, manifest_digest in conn.execute(
        select(ImageRelation.index_digest, ImageRelation.manifest_digest).where(
            or_(ImageRelation.index_digest.in_(digests), ImageRelation.manifest_digest.in_(digests))
        )
    ):
        found.update((index_digest, manifest_digest))
    return found


def refresh_digest_organizations(target: Union[Connection, Session], digests: Iterable[str]) -> int:
    """Recompute the rows of ``digests`` and of their index / platform relatives; returns rows changed.

    Call it after writing pushes of these digests or relations naming them, in the same transaction.
    """
    conn = connection_of(target)
    wanted = sorted({d for d in digests if d})
    touched: Set[str] = set()
    for chunk in _chunks(wanted):
        touched |= _with_relatives(conn, chunk)
    changed = 0
    table = DigestOrganization.__table__
    for chunk in _chunks(sorted(touched)):
        expected: Set[Tuple[str, int]] = {tuple(row) for row in conn.execute(_pairs(chunk))}
        stored: Set[Tuple[str, int]] = {
            tuple(row)
            for row in conn.execute(
                select(table.c.digest, table.c.organization_id).where(table.c.digest.in_(chunk))
            )
        }
        stale = sorted(stored - expected)
        if stale:
            conn.execute(delete(table).where(tuple_(table.c.digest, table.c.organization_id).in_(stale)))
        missing = sorted(expected - stored)
        if missing:
            insert_many(
                conn,
                table,
                [{"digest": d, "organization_id": o} for d, o in missing],
                skip_conflicts_on=("digest", "organization_id"),
            )
        _edit_containers(conn, added=missing, removed=stale)
        changed += len(stale) + len(missing)
    return changed


def rebuild_digest_organizations(target: Union[Connection, Session]) -> int:
    """Rewrite the whole table from pushes and relations (after a bulk load that bypassed ingest)."""
    conn = connection_of(target)
    table = DigestOrganization.__table__
    conn.execute(delete(table))
    pairs = _pairs(None).subquery()
    conn.execute(table.insert().from_select(["digest", "organization_id"], select(pairs)))
    conn.execute(update(RunningContainer.__table__).values(organization_ids=None))
    fill_container_organizations(conn)
    return conn.execute(select(func.count()).select_from(table)).scalar_one()


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def add_pushed_organizations(conn: Connection, pushed: Iterable[Tuple[str, int]]) -> int:
    """Insert the rows that newly stored pushes add, in one statement; ``pushed`` holds (digest, id of the
    pushing organisation) of each. Returns rows inserted.

    A new push only ever adds organisations, to its digest and to the digest's relatives (``image_relations``
    as this transaction sees them, its own rows included), so the batch's own pushes are all it reads: a base
    image pushed by every build would otherwise be re-read by each batch. Removals go through
    ``refresh_digest_organizations``.
    """
    rows = [{"digest": d, "organization_id": o} for d, o in sorted(set(pushed)) if d]
    if not rows:
        return 0
    added = returned_with_rows(conn, _add_sql(conn), rows)
    _edit_containers(conn, added=added, removed=[])
    return len(added)


def _add_sql(conn: Connection) -> str:
    table = DigestOrganization.__table__
    pushed = rows_source(conn, table, ("digest", "organization_id"))
    # WHERE true: SQLite reads an ON right after a FROM as part of a join
    return f"""WITH pushed AS (SELECT digest, organization_id FROM {pushed})
        INSERT INTO digest_organizations (digest, organization_id)
        SELECT digest, organization_id FROM (
            SELECT digest, organization_id FROM pushed
            UNION SELECT r.manifest_digest, p.organization_id FROM pushed p
                JOIN image_relations r ON r.index_digest = p.digest
            UNION SELECT r.index_digest, p.organization_id FROM pushed p
                JOIN image_relations r ON r.manifest_digest = p.digest) AS added
        WHERE true ORDER BY digest, organization_id
        ON CONFLICT (digest, organization_id) DO NOTHING RETURNING digest, organization_id"""


# --- running_containers.organization_ids ------------------------------------------------------------


def lock_container_organizations(target: Union[Connection, Session], exclusive: bool = False) -> None:
    """Hold ``VISIBILITY_LOCK`` until the transaction ends (PostgreSQL; SQLite has one writer at a time).

    Take it before writing any running_containers row in the transaction: a fill waiting for it must never
    hold a row such a writer waits for.
    """
    conn = connection_of(target)
    if conn.dialect.name == "postgresql":
        function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        execute_fixed(conn, f"SELECT {function}(%s)", (VISIBILITY_LOCK,))


# On PostgreSQL the edits are fixed texts (every ingest batch runs one: SQLAlchemy's compilation of the statements
# SQLite runs cost more than PostgreSQL's execution). %s: the text appended or replaced, the digests as a JSON
# array, and the LIKE pattern of the organisation's marker (an integer: no wildcard in it).
_PG_DIGESTS = ("WHERE digest = ANY(ARRAY(SELECT json_array_elements_text(%s::json)))"
               f" AND organization_ids IS NOT NULL AND organization_ids <> '{ORGANIZATION_COPY_FULL}'"
               " AND organization_ids")
# A copy names one organisation fewer than it has commas: one that names ORGANIZATION_COPY_MAX already is full.
_PG_ADD = ("UPDATE running_containers SET organization_ids = CASE WHEN length(organization_ids)"
           f" - length(replace(organization_ids, ',', '')) > {ORGANIZATION_COPY_MAX}"
           f" THEN '{ORGANIZATION_COPY_FULL}' ELSE organization_ids || %s END {_PG_DIGESTS} NOT LIKE %s")
_PG_REMOVE = f"UPDATE running_containers SET organization_ids = replace(organization_ids, %s, ',') {_PG_DIGESTS} LIKE %s"


def _edit_containers(conn: Connection, added: Sequence[Tuple[str, int]], removed: Sequence[Tuple[str, int]]) -> None:
    """Add / remove organisation ids on the filled organization_ids of containers running these digests."""
    if not added and not removed:
        return
    lock_container_organizations(conn)
    postgres = conn.dialect.name == "postgresql"
    column = RunningContainer.__table__.c.organization_ids
    digest = RunningContainer.__table__.c.digest
    for pairs, is_added in ((added, True), (removed, False)):
        by_org: Dict[int, Set[str]] = defaultdict(set)
        for d, org in pairs:
            by_org[int(org)].add(d)
        for org, digests in sorted(by_org.items()):
            marker = f",{org},"
            if postgres:
                execute_fixed(conn, _PG_ADD if is_added else _PG_REMOVE,
                              (f"{org}," if is_added else marker, json.dumps(sorted(digests)), f"%{marker}%"))
                continue
            if is_added:
                named = func.length(column) - func.length(func.replace(column, ",", ""))
                values = case((named > ORGANIZATION_COPY_MAX, ORGANIZATION_COPY_FULL), else_=column + f"{org},")
                has = column.not_like(f"%{marker}%")
            else:
                values, has = func.replace(column, marker, ","), column.like(f"%{marker}%")
            for chunk in _chunks(sorted(digests)):
                conn.execute(update(RunningContainer.__table__)
                             .where(digest.in_(chunk), column.is_not(None), column != ORGANIZATION_COPY_FULL, has)
                             .values(organization_ids=values))


def fill_container_organizations(target: Union[Connection, Session], cluster_id: Optional[int] = None) -> int:
    """Fill organization_ids of the containers (of one cluster) that have none yet; returns rows filled.

    Its own transaction after the sync's commit (the API's cluster writes), or any later one: until then the
    reader's condition looks those rows up in digest_organizations, so nothing is shown or hidden wrongly.
    """
    conn = connection_of(target)
    lock_container_organizations(conn, exclusive=True)
    containers = RunningContainer.__table__
    unfilled = [containers.c.organization_ids.is_(None)]
    if cluster_id is not None:
        unfilled.append(containers.c.cluster_id == cluster_id)
    ids = cast(DigestOrganization.organization_id, String)
    joined = func.string_agg(ids, ",") if conn.dialect.name == "postgresql" else func.group_concat(ids, ",")
    copy = (
        select(case((func.count() > ORGANIZATION_COPY_MAX, ORGANIZATION_COPY_FULL),
                    else_=literal(",") + func.coalesce(joined + literal(","), "")))
        .where(DigestOrganization.digest == containers.c.digest)
        .scalar_subquery()
    )
    return conn.execute(update(containers).where(*unfilled).values(organization_ids=copy)).rowcount
