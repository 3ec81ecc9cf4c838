"""Storing one validated report: every row in one transaction, idempotent by reportId.

Dimension rows (organisation, project, pipeline, repository, person, run, job, image
reference) are shared between reports and created on first sight with
``INSERT .. ON CONFLICT DO NOTHING`` followed by a SELECT, so concurrent requests on
several processes never fail on, or duplicate, a row another request created first.
Rows are always taken in the same table order, and sorted within a table, so two
transactions cannot wait on each other in a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Mapping, Optional, Tuple

from sqlalchemy import Table, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from imagetrail.server.auth import Principal
from imagetrail.server.models import pipeline as m

T_ORGS: Table = m.Organization.__table__
T_PROJECTS: Table = m.Project.__table__
T_PIPELINES: Table = m.Pipeline.__table__
T_REPOSITORIES: Table = m.Repository.__table__
T_PEOPLE: Table = m.Person.__table__
T_RUNS: Table = m.Run.__table__
T_JOBS: Table = m.Job.__table__
T_REPORTS: Table = m.Report.__table__
T_IMAGES: Table = m.Image.__table__
T_REFERENCES: Table = m.ImageReference.__table__
T_PUSHES: Table = m.Push.__table__
T_RELATIONS: Table = m.ImageRelation.__table__

# An organisation's last_report_at is refreshed at most this often: updating it on every
# report would make all concurrent reports of one organisation queue on one row lock.
LAST_REPORT_RESOLUTION = timedelta(minutes=1)
# PostgreSQL deadlock_detected / serialization_failure: the transaction is retried whole.
RETRYABLE_SQLSTATES = {"40P01", "40001"}
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class IngestResult:
    report_id: str
    created: bool
    pushes: int


class _AlreadyStored(Exception):
    def __init__(self, result: IngestResult):
        super().__init__(result.report_id)
        self.result = result


def _insert(conn: Connection, table: Table):
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _get_or_create(conn: Connection, table: Table, keys: Mapping[str, Any], values: Mapping[str, Any]) -> int:
    where = and_(*(table.c[k] == v for k, v in keys.items()))
    found = conn.execute(select(table.c.id).where(where)).scalar()
    if found is not None:
        return found
    stmt = (_insert(conn, table).values({**keys, **values})
            .on_conflict_do_nothing(index_elements=list(keys)).returning(table.c.id))
    created = conn.execute(stmt).scalar()
    if created is not None:
        return created
    # Another transaction created it between our SELECT and INSERT; it is committed now.
    return conn.execute(select(table.c.id).where(where)).scalar_one()


def _text(value: Any) -> Optional[str]:
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _timestamp(value: Optional[str]) -> Optional[datetime]:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def ingest_report(sessions: sessionmaker[Session], body: Dict[str, Any], principal: Principal) -> IngestResult:
    """Store a report validated by ``imagetrail.server.validation.validate_report``."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with sessions() as session, session.begin():
                return _store(session.connection(), body, principal)
        except _AlreadyStored as duplicate:
            return duplicate.result
        except DBAPIError as exc:
            sqlstate = getattr(exc.orig, "sqlstate", None)
            if sqlstate not in RETRYABLE_SQLSTATES or attempt == MAX_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _store(conn: Connection, body: Dict[str, Any], principal: Principal) -> IngestResult:
    report_id = body["reportId"]
    pushes = _unique_pushes(body.get("pushes") or [])
    if conn.execute(select(T_REPORTS.c.id).where(T_REPORTS.c.id == report_id)).first() is not None:
        return IngestResult(report_id, created=False, pushes=len(pushes))
    now = datetime.now(timezone.utc)
    ctx = body["context"]
    job_id = _job(conn, ctx, report_id, now)

    inserted = conn.execute(
        _insert(conn, T_REPORTS).values(
            id=report_id, schema_version=body["schemaVersion"], received_at=now,
            identity_kind=principal.kind, identity_subject=principal.subject[:512], job_id=job_id, body=body,
        ).on_conflict_do_nothing(index_elements=["id"]).returning(T_REPORTS.c.id)
    ).scalar()
    if inserted is None:  # a concurrent request stored the same report first: undo our dimension rows
        raise _AlreadyStored(IngestResult(report_id, created=False, pushes=len(pushes)))

    digests = sorted({p["digest"] for p in pushes if p.get("digest")}
                     | {pl["digest"] for p in pushes for pl in p.get("platforms") or []})
    if digests:
        conn.execute(_insert(conn, T_IMAGES).on_conflict_do_nothing(index_elements=["digest"]),
                     [{"digest": d, "first_seen_at": now} for d in digests])

    reference_ids: Dict[Tuple[str, str, str], int] = {}
    for key in sorted({(p["registry"], p["repository"], p.get("tag") or "") for p in pushes}):
        reference_ids[key] = _get_or_create(conn, T_REFERENCES,
                                            {"registry": key[0], "repository": key[1], "tag": key[2]}, {})
    if pushes:
        conn.execute(T_PUSHES.insert(), [
            {
                "report_id": report_id, "job_id": job_id,
                "reference_id": reference_ids[(p["registry"], p["repository"], p.get("tag") or "")],
                "digest": p.get("digest"), "reference": p["reference"], "image_id": p.get("imageId"),
                "pushed_at": _timestamp(p.get("pushedAt")) or now, "labels": p.get("labels") or {},
                "digest_error": p.get("digestError"),
            }
            for p in pushes
        ])
    relations = sorted(
        {(p["digest"], pl["digest"]): pl for p in pushes if p.get("digest") for pl in p.get("platforms") or []}.items()
    )
    if relations:
        conn.execute(
            _insert(conn, T_RELATIONS).on_conflict_do_nothing(index_elements=["index_digest", "manifest_digest"]),
            [{"index_digest": index, "manifest_digest": manifest, "os": pl.get("os"),
              "architecture": pl.get("architecture"), "variant": pl.get("variant"), "source": "collector",
              "recorded_at": now} for (index, manifest), pl in relations],
        )
    return IngestResult(report_id, created=True, pushes=len(pushes))


def _unique_pushes(pushes: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """A reference pushed twice with the same digest in one job is one fact."""
    seen: Dict[Tuple[str, Optional[str]], Dict[str, Any]] = {}
    for push in pushes:
        seen.setdefault((push["reference"], push.get("digest")), push)
    return list(seen.values())


def _job(conn: Connection, ctx: Mapping[str, Any], report_id: str, now: datetime) -> int:
    system = ctx["system"]
    org, project, pipeline = ctx["organization"], ctx["project"], ctx["pipeline"]
    run, job, repo, person = ctx["run"], ctx["job"], ctx["repository"], ctx["requester"]
    agent = ctx.get("agent") or {}

    org_name = (_text(org.get("name")) or _text(org.get("id")) or "unknown").lower()
    org_id = _get_or_create(conn, T_ORGS, {"system": system, "name": org_name},
                            {"external_id": _text(org.get("id")), "server_url": _text(ctx.get("serverUrl")),
                             "last_report_at": now})
    conn.execute(update(T_ORGS).where(
        T_ORGS.c.id == org_id,
        or_(T_ORGS.c.last_report_at.is_(None), T_ORGS.c.last_report_at < now - LAST_REPORT_RESOLUTION),
    ).values(last_report_at=now))

    project_id = _get_or_create(
        conn, T_PROJECTS,
        {"organization_id": org_id, "name": _text(project.get("name")) or _text(project.get("id")) or "unknown"},
        {"external_id": _text(project.get("id")), "last_report_at": now})
    pipeline_id = _get_or_create(
        conn, T_PIPELINES,
        {"project_id": project_id,
         "external_id": _text(pipeline.get("id")) or _text(pipeline.get("name")) or "unknown"},
        {"name": _text(pipeline.get("name"))})

    repository_id = None
    repo_key = _text(repo.get("uri")) or _text(repo.get("name")) or _text(repo.get("id"))
    if repo_key:
        repository_id = _get_or_create(
            conn, T_REPOSITORIES, {"organization_id": org_id, "uri": repo_key},
            {"name": _text(repo.get("name")), "type": _text(repo.get("type")), "external_id": _text(repo.get("id"))})

    requester_id = None
    person_key = _text(person.get("email")) or _text(person.get("id")) or _text(person.get("name"))
    if person_key:
        requester_id = _get_or_create(
            conn, T_PEOPLE, {"organization_id": org_id, "key": person_key.lower()},
            {"name": _text(person.get("name")), "email": _text(person.get("email")),
             "external_id": _text(person.get("id"))})

    run_facts = {"number": _text(run.get("number")), "url": _text(run.get("url")), "reason": _text(run.get("reason")),
                 "repository_id": repository_id, "branch": _text(repo.get("branch")),
                 "commit": _text(repo.get("commit")), "requester_id": requester_id}
    run_keys = {"pipeline_id": pipeline_id,
                "external_id": _text(run.get("id")) or _text(run.get("number")) or report_id,
                "attempt": run.get("attempt") or 1}
    run_id = _run(conn, run_keys, run_facts)

    return _get_or_create(
        conn, T_JOBS,
        {"run_id": run_id, "external_id": _text(job.get("id")) or _text(job.get("name")) or "job",
         "attempt": job.get("attempt") or 1},
        {"name": _text(job.get("name")), "stage": _text(job.get("stage")), "agent_name": _text(agent.get("name")),
         "agent_os": _text(agent.get("os")), "host_type": _text(agent.get("hostType"))})


def _run(conn: Connection, keys: Mapping[str, Any], facts: Mapping[str, Any]) -> int:
    """Get or create the run; a run first seen through a job that lacked some facts (commit,
    requester...) gets them from a later job's report."""
    where = and_(*(T_RUNS.c[k] == v for k, v in keys.items()))
    row = conn.execute(select(T_RUNS.c.id, *(T_RUNS.c[k] for k in facts)).where(where)).first()
    if row is None:
        return _get_or_create(conn, T_RUNS, keys, facts)
    missing = {k: v for k, v in facts.items() if v is not None and getattr(row, k) is None}
    if missing:
        conn.execute(update(T_RUNS).where(T_RUNS.c.id == row.id)
                     .values({k: func.coalesce(T_RUNS.c[k], v) for k, v in missing.items()}))
    return row.id
