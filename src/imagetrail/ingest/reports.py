"""Storing validated reports: every row of a report in one transaction, idempotent by reportId.

``store_reports`` writes a batch of reports in ONE transaction with set-based statements
(multi-row ``INSERT .. ON CONFLICT DO NOTHING RETURNING``), so a batch costs a handful of
round trips and one commit however many reports it holds (group commit, see
``ingest_writer``). ``ingest_report`` is the same code path for one report.

Dimension rows (organisation, project, pipeline, repository, person, run, job, image
reference) are shared between reports and created on first sight with
``INSERT .. ON CONFLICT DO NOTHING`` followed by a SELECT of the rows another transaction
created first, so concurrent writers on several processes never fail on, or duplicate,
a shared row. Tables are always written in the same order, and rows sorted by key within
a table, so two transactions cannot wait on each other in a cycle.

Ids of dimension rows are remembered in process memory (``DimensionCache``), learned only
after the transaction that saw them committed. That is safe because these rows are never
deleted or re-keyed; a run's number, URL and reason only ever go from NULL to a value, and
the cache remembers which ones it saw set.

A run's repository, branch, commit and requester carry evidence: each report adds statements
(value, verified | claimed, which credential) to ``fact_statements``, and the run's values are
re-resolved from all its statements (``server/evidence.py``) whenever a new one is recorded,
under a lock on the run row, so concurrent reports of one run cannot lose a statement.

A report whose ``reportId`` is already stored is a duplicate when its content is the same
(times, warnings and collector details aside); different content is refused with
``ReportConflict`` (409) naming the fields. A stored report that was only claimed is replaced by
the same reportId sent with a run-bound credential (job token, CI API), whatever its content.

A batch that fails for any reason but an unavailable database is written again one report
per transaction, so one bad report cannot sink the others.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

from sqlalchemy import Table, bindparam, delete, func, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from imagetrail.facts import IDENTITY_FACTS, SOURCE_FACTS
from imagetrail.auth import Principal
from imagetrail.auth.report_claims import BOUND_KINDS, assess
from imagetrail.store.bulk import insert_many, select_by_keys
from imagetrail.auth.evidence import Statement, resolve
from imagetrail.ingest.digest_organizations import refresh_digest_organizations
from imagetrail.store.models import pipeline as m
from imagetrail.store.models.evidence import FactStatement

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
T_STATEMENTS: Table = FactStatement.__table__

# An organisation's last_report_at is refreshed at most this often: updating it on every
# report would make all concurrent reports of one organisation queue on one row lock.
LAST_REPORT_RESOLUTION = timedelta(minutes=1)
# PostgreSQL deadlock_detected / serialization_failure: the transaction is retried whole.
RETRYABLE_SQLSTATES = {"40P01", "40001"}
MAX_ATTEMPTS = 3
# A cache map that grows past this many entries is emptied (it refills from the database).
CACHE_LIMIT = 200_000

RUN_FACTS = ("number", "url", "reason")
# the runs column of each fact that carries evidence (its evidence is in runs.<fact>_evidence)
FACT_COLUMNS = {"repository": "repository_id", "branch": "branch", "commit": "commit", "requester": "requester_id"}
STATEMENT_KEY = ("run_id", "fact", "value", "credential_kind", "credential_id")
Key = Tuple[Any, ...]
Item = Tuple[Dict[str, Any], Principal]


@dataclass(frozen=True)
class IngestResult:
    report_id: str
    created: bool
    pushes: int


class ReportConflict(ValueError):
    """A report with this reportId is stored with other content; the message names what differs."""


Outcome = Union[IngestResult, BaseException]


# -- the dimension cache ------------------------------------------------------------------

@dataclass
class _Learned:
    """What one transaction saw; merged into the cache only after it committed."""

    ids: Dict[str, Dict[Key, int]] = field(default_factory=dict)
    run_facts: Dict[int, Set[str]] = field(default_factory=dict)
    images: Set[str] = field(default_factory=set)
    orgs_touched: Set[int] = field(default_factory=set)
    statements: Set[Key] = field(default_factory=set)


class DimensionCache:
    """Ids of committed dimension rows, per database (engine), in process memory."""

    _by_engine: "weakref.WeakKeyDictionary[Engine, DimensionCache]" = weakref.WeakKeyDictionary()
    _registry_lock = threading.Lock()

    def __init__(self) -> None:
        self.ids: Dict[str, Dict[Key, int]] = {}
        self.run_facts: Dict[int, frozenset] = {}
        self.images: Set[str] = set()
        self.statements: Set[Key] = set()  # (run id, fact, value, credential kind, credential id) recorded
        self.org_touched_at: Dict[int, float] = {}  # time.monotonic() of our last last_report_at refresh
        self._lock = threading.Lock()

    @classmethod
    def for_engine(cls, engine: Engine) -> "DimensionCache":
        with cls._registry_lock:
            cache = cls._by_engine.get(engine)
            if cache is None:
                cache = cls._by_engine[engine] = cls()
            return cache

    def table(self, name: str) -> Dict[Key, int]:
        return self.ids.get(name) or {}

    def learn(self, learned: _Learned, touched_at: float) -> None:
        with self._lock:
            for name, found in learned.ids.items():
                known = self.ids.setdefault(name, {})
                if len(known) + len(found) > CACHE_LIMIT:
                    known.clear()
                known.update(found)
            if len(self.run_facts) + len(learned.run_facts) > CACHE_LIMIT:
                self.run_facts.clear()
            for run_id, facts in learned.run_facts.items():
                self.run_facts[run_id] = self.run_facts.get(run_id, frozenset()) | facts
            if len(self.images) + len(learned.images) > CACHE_LIMIT:
                self.images.clear()
            self.images |= learned.images
            if len(self.statements) + len(learned.statements) > CACHE_LIMIT:
                self.statements.clear()
            self.statements |= learned.statements
            for org_id in learned.orgs_touched:
                self.org_touched_at[org_id] = touched_at


# -- entry points -------------------------------------------------------------------------

def ingest_report(sessions: sessionmaker[Session], body: Dict[str, Any], principal: Principal) -> IngestResult:
    """Store one report validated by ``imagetrail.ingest.validation.validate_report``."""
    outcome = store_reports(sessions, [(body, principal)])[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def store_reports(sessions: sessionmaker[Session], items: Sequence[Item]) -> List[Outcome]:
    """Store validated reports, all in one transaction when possible; one outcome per item, in order.

    An outcome is an ``IngestResult`` (committed: created, or already stored) or the exception
    that kept that report out. When the database is unreachable every item gets that error
    (the client retries); when anything else fails the batch (a constraint, a value the driver
    refuses, a bug), each report is written again in its own transaction so only the report
    that fails alone gets the error.
    """
    if not items:
        return []
    try:
        return _store_with_retries(sessions, items)
    except Exception as exc:
        if _unavailable(exc):
            raise
        if len(items) == 1:
            return [exc]
    outcomes: List[Outcome] = []
    for item in items:
        outcomes.extend(store_reports(sessions, [item]))
    return outcomes


def _unavailable(exc: Exception) -> bool:
    """The database cannot be used right now (not: this batch cannot be stored)."""
    if isinstance(exc, PoolTimeoutError):
        return True
    return isinstance(exc, DBAPIError) and (isinstance(exc, OperationalError) or exc.connection_invalidated)


def _store_with_retries(sessions: sessionmaker[Session], items: Sequence[Item]) -> List[Outcome]:
    engine = sessions.kw["bind"]
    cache = DimensionCache.for_engine(engine)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        learned = _Learned()
        try:
            with engine.begin() as conn:
                results = _store_batch(conn, items, cache, learned)
        except DBAPIError as exc:
            sqlstate = getattr(exc.orig, "sqlstate", None)
            if sqlstate not in RETRYABLE_SQLSTATES or attempt == MAX_ATTEMPTS:
                raise
            continue
        cache.learn(learned, time.monotonic())
        return results
    raise AssertionError("unreachable")


# -- one batch, one transaction -----------------------------------------------------------

def _text(value: Any) -> Optional[str]:
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _lower(value: Optional[str]) -> Optional[str]:
    return value.lower() if value else None


def _timestamp(value: Optional[str]) -> Optional[datetime]:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        # in UTC here: PostgreSQL rows bypass the column type, and a time that falls outside
        # years 1-9999 in UTC could be stored but never read back
        return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError):
        return None


def _push_digests(push: Dict[str, Any]) -> List[str]:
    """The digests a push names: its own and, for an index, its platform manifests."""
    return [d for d in [push.get("digest"), *(pl.get("digest") for pl in push.get("platforms") or [])] if d]


def _unique_pushes(pushes: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """A reference pushed twice with the same digest in one job is one fact."""
    seen: Dict[Tuple[str, Optional[str]], Dict[str, Any]] = {}
    for push in pushes:
        seen.setdefault((push["reference"], push.get("digest")), push)
    return list(seen.values())


@dataclass
class _Pending:
    """One new report and the natural keys of the rows it needs."""

    report_id: str
    body: Dict[str, Any]
    principal: Principal
    pushes: List[Dict[str, Any]]
    context: Dict[str, Any]  # the report's context, with what the credential's claims filled in
    evidence: Dict[str, str]  # fact -> verified | claimed (report_claims.assess)
    org: Key
    project: str
    pipeline: str
    repository: Optional[str]
    person: Optional[str]
    run: Tuple[str, int]
    job: Tuple[str, int]


def _pending(body: Dict[str, Any], principal: Principal, pushes: List[Dict[str, Any]]) -> _Pending:
    assessment = assess(principal, body)
    ctx = dict(body["context"])
    for (section, key), value in assessment.filled.items():
        ctx[section] = {**(ctx.get(section) or {}), key: value}
    org, project, pipeline = ctx["organization"], ctx["project"], ctx["pipeline"]
    run, job, repo, person = ctx["run"], ctx["job"], ctx["repository"], ctx["requester"]
    return _Pending(
        report_id=body["reportId"], body=body, principal=principal, pushes=pushes, context=ctx,
        evidence=assessment.evidence,
        org=(ctx["system"], (_text(org.get("name")) or _text(org.get("id")) or "unknown").lower()),
        project=_text(project.get("name")) or _text(project.get("id")) or "unknown",
        pipeline=_text(pipeline.get("id")) or _text(pipeline.get("name")) or "unknown",
        repository=_text(repo.get("uri")) or _text(repo.get("name")) or _text(repo.get("id")),
        person=_lower(_text(person.get("email")) or _text(person.get("id")) or _text(person.get("name"))),
        run=(_text(run.get("id")) or _text(run.get("number")) or body["reportId"], run.get("attempt") or 1),
        job=(_text(job.get("id")) or _text(job.get("name")) or "job", job.get("attempt") or 1),
    )


def _resolve(conn: Connection, table: Table, key_columns: Sequence[str], wanted: Mapping[Key, Mapping[str, Any]],
             cache: DimensionCache, learned: _Learned) -> Dict[Key, int]:
    """Ids of the rows with these natural keys, creating the missing ones with the given values."""
    known = cache.table(table.name)
    ids: Dict[Key, int] = {}
    missing: List[Key] = []
    for key in sorted(wanted):
        found = known.get(key)
        if found is None:
            missing.append(key)
        else:
            ids[key] = found
    if missing:
        ids.update(_get_or_create(conn, table, key_columns, {key: wanted[key] for key in missing}))
        learned.ids.setdefault(table.name, {}).update({key: ids[key] for key in missing})
    return ids


def _get_or_create(conn: Connection, table: Table, key_columns: Sequence[str],
                   wanted: Mapping[Key, Mapping[str, Any]], extra: Sequence[str] = ()) -> Dict[Key, Any]:
    """INSERT .. ON CONFLICT DO NOTHING RETURNING, then SELECT the rows other transactions made.

    Returns key -> id, or key -> row (id first, then ``extra`` columns) for rows that already
    existed when ``extra`` is given.
    """
    keys = sorted(wanted)
    ids: Dict[Key, Any] = {}
    created = insert_many(conn, table, [{**dict(zip(key_columns, key)), **wanted[key]} for key in keys],
                          skip_conflicts_on=key_columns, returning=("id", *key_columns))
    for row in created:
        ids[tuple(row[1:])] = row[0]
    existing = [key for key in keys if key not in ids]
    # ON CONFLICT waited for the transaction that inserted these rows: they are committed now.
    for row in select_by_keys(conn, table, key_columns, existing, ("id", *extra, *key_columns)):
        ids[tuple(row[1 + len(extra):])] = tuple(row[:1 + len(extra)]) if extra else row[0]
    return ids


def _first_facts(values: Iterable[Mapping[str, Any]]) -> Dict[str, Any]:
    """Several reports of one run in a batch: the first value seen for each fact."""
    merged: Dict[str, Any] = {}
    for facts in values:
        for name, value in facts.items():
            if merged.get(name) is None:
                merged[name] = value
    return merged


def _resolve_runs(conn: Connection, wanted: Mapping[Key, Mapping[str, Any]], cache: DimensionCache,
                  learned: _Learned) -> Dict[Key, int]:
    """Get or create runs; a run first seen through a job that lacked some facts (commit,
    requester...) gets them from a later job's report."""
    known = cache.table(T_RUNS.name)
    ids: Dict[Key, int] = {}
    fill: Dict[int, Dict[str, Any]] = {}
    missing: List[Key] = []
    for key in sorted(wanted):
        run_id = known.get(key)
        if run_id is None:
            missing.append(key)
            continue
        ids[key] = run_id
        seen = cache.run_facts.get(run_id, frozenset())
        need = {k: v for k, v in wanted[key].items() if v is not None and k not in seen}
        if need:
            fill[run_id] = need
    if missing:
        found = _get_or_create(conn, T_RUNS, ("pipeline_id", "external_id", "attempt"),
                               {key: wanted[key] for key in missing}, extra=RUN_FACTS)
        for key in missing:
            value = found[key]
            if isinstance(value, tuple):  # it existed: fill what it lacks
                run_id, stored = value[0], dict(zip(RUN_FACTS, value[1:]))
                need = {k: v for k, v in wanted[key].items() if v is not None and stored[k] is None}
                if need:
                    fill[run_id] = need
                learned.run_facts[run_id] = {k for k, v in stored.items() if v is not None}
            else:
                run_id = value
                learned.run_facts[run_id] = {k for k, v in wanted[key].items() if v is not None}
            ids[key] = run_id
        learned.ids.setdefault(T_RUNS.name, {}).update({key: ids[key] for key in missing})
    for run_id in sorted(fill):
        conn.execute(update(T_RUNS).where(T_RUNS.c.id == run_id)
                     .values({k: func.coalesce(T_RUNS.c[k], v) for k, v in fill[run_id].items()}))
        learned.run_facts.setdefault(run_id, set()).update(fill[run_id])
    return ids


# Left out of the content comparison of two reports with one reportId: a retry a minute later
# differs in these and is still the same report (imagetrail.report.compute_report_id).
_VOLATILE = ("reportId", "generatedAt", "warnings", "collector")


def _differences(stored: Mapping[str, Any], new: Mapping[str, Any]) -> List[str]:
    """Field paths whose values differ between two bodies with the same reportId."""
    found: List[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{path}.{key}" if path else key)
        elif a != b:
            found.append(path)

    def pushes(body: Mapping[str, Any]) -> Dict[str, Any]:
        return {f"pushes[{p.get('reference')}@{p.get('digest')}]": {k: v for k, v in p.items() if k != "pushedAt"}
                for p in body.get("pushes") or [] if isinstance(p, dict)}

    walk({k: v for k, v in stored.items() if k not in _VOLATILE and k != "pushes"},
         {k: v for k, v in new.items() if k not in _VOLATILE and k != "pushes"}, "")
    walk(pushes(stored), pushes(new), "")
    return found


def _conflict(report_id: str, differences: List[str]) -> ReportConflict:
    shown = ", ".join(differences[:5]) + (f" and {len(differences) - 5} more" if len(differences) > 5 else "")
    return ReportConflict(f"reportId {report_id} is already stored with different content ({shown}); "
                          "a report is never changed once stored: send the new facts in a report of their own")


def _drop_reports(conn: Connection, report_ids: List[str]) -> Set[str]:
    """Remove claimed reports that a run-bound credential's report of the same reportId replaces; returns the
    digests their pushes named."""
    dropped = conn.execute(delete(T_PUSHES).where(T_PUSHES.c.report_id.in_(report_ids))
                           .returning(T_PUSHES.c.digest)).scalars().all()
    conn.execute(delete(T_REPORTS).where(T_REPORTS.c.id.in_(report_ids)))
    return {d for d in dropped if d}


def _record_statements(conn: Connection, statements: Mapping[int, List[Tuple[str, Statement]]],
                       cache: DimensionCache, learned: _Learned, now: datetime) -> None:
    """Record what these reports (run id -> [(report id, statement)]) state about their runs' facts,
    and re-resolve the runs that got a new statement (server/evidence.py). Statements already
    recorded cost nothing."""
    fresh = {run_id: [(rid, s) for rid, s in found if (run_id, *s.key) not in cache.statements]
             for run_id, found in statements.items()}
    fresh = {run_id: found for run_id, found in fresh.items() if found}
    for run_id, found in statements.items():
        learned.statements.update((run_id, *s.key) for _, s in found)
    if not fresh:
        return
    # Lock the runs first (PostgreSQL; SQLite writers are serial anyway): a concurrent report of the
    # same run waits, then sees this one's statements when it re-resolves.
    conn.execute(select(T_RUNS.c.id).where(T_RUNS.c.id.in_(sorted(fresh))).order_by(T_RUNS.c.id).with_for_update())
    rows: Dict[Key, Dict[str, Any]] = {}
    for run_id, found in sorted(fresh.items()):
        for report_id, s in found:
            rows.setdefault((run_id, *s.key), {
                "run_id": run_id, "fact": s.fact, "value": s.value, "ref_id": s.ref_id, "evidence": s.evidence,
                "credential_kind": s.credential_kind, "credential_id": s.credential_id, "report_id": report_id,
                "recorded_at": now})
    changed = {row[0] for row in insert_many(conn, T_STATEMENTS, [rows[k] for k in sorted(rows)],
                                             skip_conflicts_on=STATEMENT_KEY, returning=("run_id",))}
    if changed:
        _resolve_facts(conn, sorted(changed))


def _resolve_facts(conn: Connection, run_ids: List[int]) -> None:
    """Set each run's four facts and their evidence from all its statements (one UPDATE, executemany)."""
    recorded: Dict[Tuple[int, str], List[Statement]] = {}
    for row in conn.execute(select(T_STATEMENTS).where(T_STATEMENTS.c.run_id.in_(run_ids))
                            .order_by(T_STATEMENTS.c.id)).mappings():
        recorded.setdefault((row["run_id"], row["fact"]), []).append(Statement(
            row["fact"], row["value"], row["ref_id"], row["evidence"], row["credential_kind"], row["credential_id"]))
    rows = []
    for run_id in run_ids:
        values: Dict[str, Any] = {"p_id": run_id}
        for fact, column in FACT_COLUMNS.items():
            shown, evidence = resolve(recorded.get((run_id, fact), []))
            value = None if shown is None else shown.ref_id if column.endswith("_id") else shown.value
            values[f"p_{column}"], values[f"p_{fact}_evidence"] = value, evidence
        rows.append(values)
    columns = [*FACT_COLUMNS.values(), *(f"{fact}_evidence" for fact in FACT_COLUMNS)]
    # bindparam names must not be column names of the SET clause: hence the p_ prefix
    conn.execute(update(T_RUNS).where(T_RUNS.c.id == bindparam("p_id"))
                 .values({column: bindparam(f"p_{column}") for column in columns}), rows)


def _store_batch(conn: Connection, items: Sequence[Item], cache: DimensionCache,
                 learned: _Learned) -> List[Outcome]:
    now = datetime.now(timezone.utc)
    pushes_of = [_unique_pushes(body.get("pushes") or []) for body, _ in items]
    first: Dict[str, int] = {}  # reportId -> the item stored: the first, or the first run-bound one
    for index, (body, principal) in enumerate(items):
        chosen = first.get(body["reportId"])
        if chosen is None or (principal.kind in BOUND_KINDS and items[chosen][1].kind not in BOUND_KINDS):
            first[body["reportId"]] = index
    stored = {row[0]: (row[1], row[2]) for row in select_by_keys(
        conn, T_REPORTS, ("id",), [(rid,) for rid in sorted(first)], ("id", "identity_kind", "body"))}
    refused: Dict[str, ReportConflict] = {}
    replaced: List[str] = []
    for rid, (stored_kind, stored_body) in sorted(stored.items()):
        body, principal = items[first[rid]]
        if principal.kind in BOUND_KINDS and stored_kind not in BOUND_KINDS:
            # A verified report is never kept out, nor left claimed, by a claimed one sent first.
            replaced.append(rid)
            continue
        differences = _differences(stored_body, body)
        if differences:
            refused[rid] = _conflict(rid, differences)
    dropped = _drop_reports(conn, replaced) if replaced else set()
    new = [_pending(items[i][0], items[i][1], pushes_of[i]) for rid, i in sorted(first.items())
           if rid not in stored or rid in replaced]
    created: Set[str] = _store_new(conn, new, cache, learned, now) if new else set()
    # The explorer's visibility (which organisations pushed each digest) follows these pushes in this transaction.
    refresh_digest_organizations(conn, dropped | {d for p in new for q in p.pushes for d in _push_digests(q)})
    outcomes: List[Outcome] = []
    for index, (body, _) in enumerate(items):
        rid = body["reportId"]
        differences = _differences(items[first[rid]][0], body) if first[rid] != index else []
        if rid in refused or differences:
            outcomes.append(refused.get(rid) or _conflict(rid, differences))
        else:
            outcomes.append(IngestResult(rid, created=first[rid] == index and rid in created,
                                         pushes=len(pushes_of[index])))
    return outcomes


def _store_new(conn: Connection, new: List[_Pending], cache: DimensionCache, learned: _Learned,
               now: datetime) -> Set[str]:
    """Rows of reports not stored yet; returns the ids of the reports this transaction inserted."""
    ctx_of = {p.report_id: p.context for p in new}

    # organisations
    orgs = {}
    for p in new:
        ctx = ctx_of[p.report_id]
        orgs.setdefault(p.org, {"external_id": _text(ctx["organization"].get("id")),
                                "server_url": _text(ctx.get("serverUrl")), "last_report_at": now})
    org_ids = _resolve(conn, T_ORGS, ("system", "name"), orgs, cache, learned)
    due = time.monotonic() - LAST_REPORT_RESOLUTION.total_seconds()
    touch = sorted(org_id for org_id in {org_ids[k] for k in orgs}
                   if cache.org_touched_at.get(org_id, float("-inf")) < due)
    if touch:
        conn.execute(update(T_ORGS).where(
            T_ORGS.c.id.in_(touch),
            or_(T_ORGS.c.last_report_at.is_(None), T_ORGS.c.last_report_at < now - LAST_REPORT_RESOLUTION),
        ).values(last_report_at=now))
    learned.orgs_touched.update(org_ids[k] for k in orgs)

    # projects, pipelines, repositories, people
    projects = {}
    for p in new:
        projects.setdefault((org_ids[p.org], p.project),
                            {"external_id": _text(ctx_of[p.report_id]["project"].get("id")), "last_report_at": now})
    project_ids = _resolve(conn, T_PROJECTS, ("organization_id", "name"), projects, cache, learned)
    pipelines = {}
    for p in new:
        pipelines.setdefault((project_ids[(org_ids[p.org], p.project)], p.pipeline),
                             {"name": _text(ctx_of[p.report_id]["pipeline"].get("name"))})
    pipeline_ids = _resolve(conn, T_PIPELINES, ("project_id", "external_id"), pipelines, cache, learned)
    repositories = {}
    people = {}
    for p in new:
        ctx = ctx_of[p.report_id]
        if p.repository:
            repo = ctx["repository"]
            repositories.setdefault((org_ids[p.org], p.repository), {
                "name": _text(repo.get("name")), "type": _text(repo.get("type")),
                "external_id": _text(repo.get("id"))})
        if p.person:
            person = ctx["requester"]
            people.setdefault((org_ids[p.org], p.person), {
                "name": _text(person.get("name")), "email": _text(person.get("email")),
                "external_id": _text(person.get("id"))})
    repository_ids = _resolve(conn, T_REPOSITORIES, ("organization_id", "uri"), repositories, cache, learned)
    person_ids = _resolve(conn, T_PEOPLE, ("organization_id", "key"), people, cache, learned)

    # runs and jobs
    run_key_of: Dict[str, Key] = {}
    run_facts: Dict[Key, List[Dict[str, Any]]] = {}
    for p in new:
        ctx = ctx_of[p.report_id]
        run, repo = ctx["run"], ctx["repository"]
        key = (pipeline_ids[(project_ids[(org_ids[p.org], p.project)], p.pipeline)], *p.run)
        run_key_of[p.report_id] = key
        run_facts.setdefault(key, []).append({
            "number": _text(run.get("number")), "url": _text(run.get("url")), "reason": _text(run.get("reason"))})
    run_ids = _resolve_runs(conn, {key: _first_facts(facts) for key, facts in run_facts.items()}, cache, learned)
    statements: Dict[int, List[Tuple[str, Statement]]] = {}
    for p in new:
        repo = ctx_of[p.report_id]["repository"]
        values = {"repository": (p.repository, repository_ids.get((org_ids[p.org], p.repository))),
                  "branch": (_text(repo.get("branch")), None), "commit": (_text(repo.get("commit")), None),
                  "requester": (p.person, person_ids.get((org_ids[p.org], p.person)))}
        for fact in SOURCE_FACTS:
            value, ref_id = values[fact]
            if value is not None:
                statements.setdefault(run_ids[run_key_of[p.report_id]], []).append((p.report_id, Statement(
                    fact, value[:m.REF_LEN], ref_id, p.evidence[fact], p.principal.kind, p.principal.subject[:512])))
    _record_statements(conn, statements, cache, learned, now)
    jobs = {}
    job_key_of: Dict[str, Key] = {}
    for p in new:
        ctx = ctx_of[p.report_id]
        job, agent = ctx["job"], ctx.get("agent") or {}
        key = job_key_of[p.report_id] = (run_ids[run_key_of[p.report_id]], *p.job)
        jobs.setdefault(key, {"name": _text(job.get("name")), "stage": _text(job.get("stage")),
                              "agent_name": _text(agent.get("name")), "agent_os": _text(agent.get("os")),
                              "host_type": _text(agent.get("hostType"))})
    job_ids = _resolve(conn, T_JOBS, ("run_id", "external_id", "attempt"), jobs, cache, learned)

    # the reports themselves: a report another transaction stored meanwhile is not inserted
    # again, and none of its pushes are (its shared rows above are the same rows either way)
    inserted = {row[0] for row in insert_many(
        conn, T_REPORTS,
        [{"id": p.report_id, "schema_version": p.body["schemaVersion"], "received_at": now,
          "identity_kind": p.principal.kind, "identity_subject": p.principal.subject[:512],
          "job_id": job_ids[job_key_of[p.report_id]], "body": p.body,
          "evidence": {fact: p.evidence[fact] for fact in IDENTITY_FACTS}} for p in new],
        skip_conflicts_on=("id",), returning=("id",))}
    stored = [p for p in new if p.report_id in inserted]
    if not stored:
        return inserted

    # images, references, pushes, index -> platform relations
    digests = sorted({q["digest"] for p in stored for q in p.pushes if q.get("digest")}
                     | {pl["digest"] for p in stored for q in p.pushes for pl in q.get("platforms") or []})
    fresh = [d for d in digests if d not in cache.images]
    if fresh:
        insert_many(conn, T_IMAGES, [{"digest": d, "first_seen_at": now} for d in fresh],
                    skip_conflicts_on=("digest",))
    learned.images.update(digests)
    references = {(q["registry"], q["repository"], q.get("tag") or ""): {} for p in stored for q in p.pushes}
    reference_ids = _resolve(conn, T_REFERENCES, ("registry", "repository", "tag"), references, cache, learned)
    rows = [{"report_id": p.report_id, "job_id": job_ids[job_key_of[p.report_id]],
             "reference_id": reference_ids[(q["registry"], q["repository"], q.get("tag") or "")],
             "digest": q.get("digest"), "reference": q["reference"], "image_id": q.get("imageId"),
             "pushed_at": _timestamp(q.get("pushedAt")) or now, "labels": q.get("labels") or {},
             "digest_error": q.get("digestError")}
            for p in stored for q in p.pushes]
    insert_many(conn, T_PUSHES, rows)
    relations = sorted({(q["digest"], pl["digest"]): pl for p in stored for q in p.pushes if q.get("digest")
                        for pl in q.get("platforms") or []}.items())
    insert_many(conn, T_RELATIONS,
                [{"index_digest": index, "manifest_digest": manifest, "os": pl.get("os"),
                  "architecture": pl.get("architecture"), "variant": pl.get("variant"), "source": "collector",
                  "recorded_at": now} for (index, manifest), pl in relations],
                skip_conflicts_on=("index_digest", "manifest_digest"))
    return inserted
