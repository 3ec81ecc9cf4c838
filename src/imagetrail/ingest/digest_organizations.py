"""Keep ``digest_organizations`` (which organisations pushed a digest or a relative of it) equal to what
``pushes`` and ``image_relations`` say, for the digests a write touched.

Every write of pushes (report ingest, a claimed report replaced) or of relations (collector, registry,
scanner) calls ``refresh_digest_organizations`` in its own transaction, so a reader sees a new push or
relation as soon as it is committed. The rows are recomputed from the source tables, not patched: the same
call serves an insert and a delete. Missing rows are inserted skipping conflicts, so two reports pushing one
digest at once both land; ``rebuild_digest_organizations`` rewrites everything (bulk loads, repair).
"""

from __future__ import annotations

from typing import Iterable, Iterator, Optional, Sequence, Set, Tuple, Union

from sqlalchemy import Connection, delete, func, or_, select, tuple_, union
from sqlalchemy.orm import Session

from imagetrail.store.bulk import execute_with_rows, insert_many, rows_source
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
    conn = target.connection() if isinstance(target, Session) else target
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
        changed += len(stale) + len(missing)
    return changed


def rebuild_digest_organizations(target: Union[Connection, Session]) -> int:
    """Rewrite the whole table from pushes and relations (after a bulk load that bypassed ingest)."""
    conn = target.connection() if isinstance(target, Session) else target
    table = DigestOrganization.__table__
    conn.execute(delete(table))
    pairs = _pairs(None).subquery()
    conn.execute(table.insert().from_select(["digest", "organization_id"], select(pairs)))
    return conn.execute(select(func.count()).select_from(table)).scalar_one()


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def add_pushed(conn: Connection, pushed: Iterable[Tuple[str, int]]) -> int:
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
    return execute_with_rows(conn, _add_sql(conn), rows)


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
        ON CONFLICT (digest, organization_id) DO NOTHING"""
