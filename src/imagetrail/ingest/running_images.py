"""Keep ``pushed_digests`` (each pushed digest once, and whether a cluster runs it) equal to pushes and clusters.

A write that may change whether digests run never computes it (its snapshot cannot see a sync in flight): it
sets ``running`` to NULL, unknown, and ``fill_running`` computes the NULL rows in a short transaction of its own,
after the sync committed, holding ``VISIBILITY_LOCK`` exclusively while the writers hold it shared. Readers
check a NULL row themselves, so what the explorer lists is exact at any moment.
"""

from __future__ import annotations

from typing import Iterable, Set, Union

from sqlalchemy import Connection, delete, false, func, or_, select, update
from sqlalchemy.orm import Session

from imagetrail.ingest.digest_organizations import CHUNK, lock_container_organizations
from imagetrail.store.bulk import insert_many
from imagetrail.store.db import connection_of
from imagetrail.store.models.cloud import PushedDigest, running_digests, runs_somewhere
from imagetrail.store.models.pipeline import ImageRelation, Push

TABLE = PushedDigest.__table__


def add_pushed(target: Union[Connection, Session], digests: Iterable[str]) -> None:
    """Newly pushed ``digests`` (running unknown until filled); those listed already stay as they are."""
    conn = connection_of(target)
    rows = [{"digest": d} for d in sorted(set(digests)) if d]
    for start in range(0, len(rows), CHUNK):
        insert_many(conn, TABLE, rows[start:start + CHUNK], skip_conflicts_on=("digest",))


def forget_unpushed(target: Union[Connection, Session], digests: Iterable[str]) -> None:
    """Drop the rows of ``digests`` no push names any more (a replaced report's pushes)."""
    conn = connection_of(target)
    wanted = sorted(set(digests))
    if wanted:  # before writing rows a fill may be filling
        lock_container_organizations(conn)
    for start in range(0, len(wanted), CHUNK):
        conn.execute(delete(TABLE).where(TABLE.c.digest.in_(wanted[start:start + CHUNK]),
                                         ~select(Push.id).where(Push.digest == TABLE.c.digest).exists()))


def mark_unknown(target: Union[Connection, Session], digests: Iterable[str], relatives: bool = True) -> None:
    """``running`` of ``digests`` (and of their index / platform relatives) becomes unknown: containers running
    them came or went. Holds ``VISIBILITY_LOCK`` shared, so a fill in flight is over first."""
    conn = connection_of(target)
    wanted: Set[str] = {d for d in digests if d}
    if not wanted:
        return
    lock_container_organizations(conn)
    if relatives:
        listed = sorted(wanted)
        for start in range(0, len(listed), CHUNK):
            chunk = listed[start:start + CHUNK]
            r = ImageRelation
            for index_digest, manifest_digest in conn.execute(select(r.index_digest, r.manifest_digest).where(
                    or_(r.index_digest.in_(chunk), r.manifest_digest.in_(chunk)))):
                wanted.update((index_digest, manifest_digest))
    listed = sorted(wanted)
    for start in range(0, len(listed), CHUNK):
        conn.execute(update(TABLE).where(TABLE.c.digest.in_(listed[start:start + CHUNK]),
                                         TABLE.c.running.is_not(None)).values(running=None))


def fill_running(target: Union[Connection, Session]) -> int:
    """Compute ``running`` where it is unknown; returns rows filled. Its own transaction, after a sync."""
    conn = connection_of(target)
    lock_container_organizations(conn, exclusive=True)
    return conn.execute(update(TABLE).where(TABLE.c.running.is_(None))
                        .values(running=runs_somewhere(TABLE.c.digest))).rowcount


def rebuild_pushed_digests(target: Union[Connection, Session]) -> int:
    """Rewrite the whole table from pushes and fill it (after a bulk load that bypassed ingest); returns rows."""
    conn = connection_of(target)
    lock_container_organizations(conn, exclusive=True)
    conn.execute(delete(TABLE))
    pushed = select(Push.digest, false()).where(Push.digest.is_not(None)).distinct()
    conn.execute(TABLE.insert().from_select(["digest", "running"], pushed))
    # Set-based (one pass, not three lookups per row): the digests running_ways finds, as a list.
    conn.execute(update(TABLE).where(TABLE.c.digest.in_(running_digests())).values(running=True))
    return conn.execute(select(func.count()).select_from(TABLE)).scalar_one()
