"""Storing validated reports: every row of a report in one transaction, idempotent by reportId.

``store_reports`` writes a batch of reports in ONE transaction with set-based statements
(multi-row ``INSERT .. ON CONFLICT DO NOTHING RETURNING``), so a batch costs a handful of
round trips and one commit however many reports it holds (group commit, see
``ingest/writer.py``). ``ingest_report`` is the same code path for one report.

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
re-resolved from all its statements (``auth/evidence.py``) whenever a new one is recorded,
under a lock on the run row, so concurrent reports of one run cannot lose a statement.

Ingest reads the typed report (``imagetrail.report.Report.from_dict`` of the schema-valid body,
see ``Submission``); only the stored body and the comparison of a resent one use the JSON as received.

A report whose ``reportId`` is already stored is a duplicate when its content is the same
(times, warnings and collector details aside); different content is refused with
``ReportConflict`` (409) naming the fields. A stored report that was only claimed is replaced by
the same reportId sent with a run-bound credential (job token, CI API), whatever its content.

A batch that fails for any reason but an unavailable database is written again one report
per transaction, so one bad report cannot sink the others.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

from sqlalchemy import Table, bindparam, delete, func, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from imagetrail.auth import Principal
from imagetrail.auth.evidence import Statement, resolve
from imagetrail.auth.report_claims import BOUND_KINDS, Assessment, assess
from imagetrail.facts import IDENTITY_FACTS, SOURCE_FACTS
from imagetrail.ingest.digest_organizations import add_pushed_organizations, refresh_digest_organizations
from imagetrail.ingest.running_images import add_pushed, forget_unpushed
from imagetrail.report import PipelineContext, Push, Report
from imagetrail.store.bulk import insert_many, select_by_keys
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
log = logging.getLogger("imagetrail.ingest.reports")
MAX_ATTEMPTS = 3
# A cache map that grows past this many entries is emptied (it refills from the database).
CACHE_LIMIT = 200_000

RUN_FACTS = ("number", "url", "reason")
# the runs column of each fact that carries evidence (its evidence is in runs.<fact>_evidence)
FACT_COLUMNS = {"repository": "repository_id", "branch": "branch", "commit": "commit", "requester": "requester_id"}
STATEMENT_KEY = ("run_id", "fact", "value", "credential_kind", "credential_id")
Key = Tuple[Any, ...]


@dataclass(frozen=True)
class Submission:
    """A schema-valid report as ingest works on it: typed, and assessed once.

    ``body`` is the JSON as received: it is stored verbatim and compared when the same
    reportId arrives again. Everything else reads the typed ``report``.
    """

    body: Dict[str, Any]
    report: Report
    assessment: Assessment  # report_claims.assess for the principal that sent it

    @property
    def report_id(self) -> str:
        return self.body["reportId"]

    @classmethod
    def of(cls, body: Dict[str, Any], principal: Principal) -> "Submission":
        """For a body that passed ``validation.validate_report``."""
        return cls(body, Report.from_dict(body), assess(principal, body))


# (body or Submission, the principal that sent it): a plain body is typed and assessed here
Item = Tuple[Union[Dict[str, Any], Submission], Principal]
_Typed = Tuple[Submission, Principal]


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

def ingest_report(sessions: sessionmaker[Session], body: Union[Dict[str, Any], Submission],
                  principal: Principal) -> IngestResult:
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
    typed = [_typed(body, principal) for body, principal in items]
    ready = [item for item in typed if not isinstance(item, BaseException)]
    stored = iter(_store_typed(sessions, ready))
    return [item if isinstance(item, BaseException) else next(stored) for item in typed]


def _typed(body: Union[Dict[str, Any], Submission], principal: Principal) -> Union[_Typed, BaseException]:
    if isinstance(body, Submission):
        return body, principal
    try:
        return Submission.of(body, principal), principal
    except (KeyError, TypeError, AttributeError) as exc:  # not a schema-valid body: validate first
        return exc


def _store_typed(sessions: sessionmaker[Session], items: Sequence[_Typed]) -> List[Outcome]:
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
        outcomes.extend(_store_typed(sessions, [item]))
    return outcomes


def _unavailable(exc: Exception) -> bool:
    """The database cannot be used right now (not: this batch cannot be stored)."""
    if isinstance(exc, PoolTimeoutError):
        return True
    return isinstance(exc, DBAPIError) and (isinstance(exc, OperationalError) or exc.connection_invalidated)


def _store_with_retries(sessions: sessionmaker[Session], items: Sequence[_Typed]) -> List[Outcome]:
    engine = sessions.kw["bind"]
    cache = DimensionCache.for_engine(engine)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        learned = _Learned()
        try:
            with engine.begin() as conn:
                results = _store_batch(conn, items, cache, learned)
        except DBAPIError as exc:
            sqlstate = getattr(exc.orig, "sqlstate", None)
            # A pooled connection found dead (a database restart, pg_terminate_backend): the pool replaces its
            # older connections and the batch is written again on a new one. Safe because ingest is idempotent:
            # if the lost connection had committed, the reports come back as duplicates of themselves.
            if (sqlstate not in RETRYABLE_SQLSTATES and not exc.connection_invalidated) or attempt == MAX_ATTEMPTS:
                raise
            # Rare by design (locks are taken in one order); seen often, it means writers collide.
            log.info("a batch of %d reports is retried after %s (attempt %d)", len(items),
                     f"SQLSTATE {sqlstate}" if sqlstate in RETRYABLE_SQLSTATES else "a lost connection", attempt)
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


def _unique_pushes(pushes: List[Push]) -> List[Push]:
    """A reference pushed twice with the same digest in one job is one fact."""
    seen: Dict[Tuple[str, Optional[str]], Push] = {}
    for push in pushes:
        seen.setdefault((push.reference, push.digest), push)
    return list(seen.values())


@dataclass
class _Pending:
    """One new report and the natural keys of the rows it needs."""

    report_id: str
    submission: Submission
    principal: Principal
    pushes: List[Push]
    context: PipelineContext  # the report's context, with what the credential's claims filled in
    evidence: Dict[str, str]  # fact -> verified | claimed (report_claims.assess)
    org: Key
    project: str
    pipeline: str
    repository: Optional[str]
    person: Optional[str]
    run: Tuple[str, int]
    job: Tuple[str, int]


def _filled(ctx: PipelineContext, assessment: Assessment) -> PipelineContext:
    """``ctx`` with the values the credential's claims supply where the report had none
    (sections and keys are one word: the JSON name is the field name)."""
    for (section, key), value in assessment.filled.items():
        ctx = replace(ctx, **{section: replace(getattr(ctx, section), **{key: value})})
    return ctx


def _pending(submission: Submission, principal: Principal, pushes: List[Push]) -> _Pending:
    ctx = _filled(submission.report.context, submission.assessment)
    org, project, pipeline = ctx.organization, ctx.project, ctx.pipeline
    run, job, repo, person = ctx.run, ctx.job, ctx.repository, ctx.requester
    report_id = submission.report_id
    return _Pending(
        report_id=report_id, submission=submission, principal=principal, pushes=pushes, context=ctx,
        evidence=submission.assessment.evidence,
        org=(ctx.system, (_text(org.name) or _text(org.id) or "unknown").lower()),
        project=_text(project.name) or _text(project.id) or "unknown",
        pipeline=_text(pipeline.id) or _text(pipeline.name) or "unknown",
        repository=_text(repo.uri) or _text(repo.name) or _text(repo.id),
        person=_lower(_text(person.email) or _text(person.id) or _text(person.name)),
        run=(_text(run.id) or _text(run.number) or report_id, run.attempt or 1),
        job=(_text(job.id) or _text(job.name) or "job", job.attempt or 1),
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


def _resolve_runs(conn: Connection, wanted: Mapping[Key, Mapping[str, Any]], facts: Mapping[Key, Mapping[str, Any]],
                  cache: DimensionCache, learned: _Learned) -> Tuple[Dict[Key, int], Set[int]]:
    """Get or create runs; returns key -> id and the ids of the runs this transaction created.

    A run first seen through a job that lacked some facts (number, url...) gets them from a
    later job's report. A new run is inserted with ``facts`` (its evidence columns, resolved
    from this batch's statements), so it needs no second look after its statements are recorded.
    """
    created: Set[int] = set()
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
                               {key: {**wanted[key], **facts[key]} for key in missing}, extra=RUN_FACTS)
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
                created.add(run_id)
                learned.run_facts[run_id] = {k for k, v in wanted[key].items() if v is not None}
            ids[key] = run_id
        learned.ids.setdefault(T_RUNS.name, {}).update({key: ids[key] for key in missing})
    for run_id in sorted(fill):
        conn.execute(update(T_RUNS).where(T_RUNS.c.id == run_id)
                     .values({k: func.coalesce(T_RUNS.c[k], v) for k, v in fill[run_id].items()}))
        learned.run_facts.setdefault(run_id, set()).update(fill[run_id])
    return ids, created


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
                       cache: DimensionCache, learned: _Learned, now: datetime, created: Set[int]) -> None:
    """Record what these reports (run id -> [(report id, statement)]) state about their runs' facts,
    and re-resolve the runs that got a new statement (auth/evidence.py). Statements already
    recorded cost nothing. Runs this transaction ``created`` were inserted with their facts
    resolved from these same statements (``_run_facts``): no other statement of theirs exists."""
    fresh = {run_id: [(rid, s) for rid, s in found if (run_id, *s.key) not in cache.statements]
             for run_id, found in statements.items()}
    fresh = {run_id: found for run_id, found in fresh.items() if found}
    for run_id, found in statements.items():
        learned.statements.update((run_id, *s.key) for _, s in found)
    if not fresh:
        return
    # Lock the runs first (PostgreSQL; SQLite writers are serial anyway): a concurrent report of the
    # same run waits, then sees this one's statements when it re-resolves. FOR NO KEY UPDATE, not FOR UPDATE:
    # the jobs' foreign-key checks take FOR KEY SHARE on every run of a batch, and against FOR UPDATE two
    # writers each holding a run the other's jobs name deadlocked (a 1 s deadlock_timeout, then a retry).
    existing = sorted(run_id for run_id in fresh if run_id not in created)
    if existing:  # a created run is locked already: this transaction inserted it
        conn.execute(select(T_RUNS.c.id).where(T_RUNS.c.id.in_(existing)).order_by(T_RUNS.c.id)
                     .with_for_update(key_share=True))
    rows: Dict[Key, Dict[str, Any]] = {}
    for run_id, found in sorted(fresh.items()):
        for report_id, s in found:
            rows.setdefault((run_id, *s.key), {
                "run_id": run_id, "fact": s.fact, "value": s.value, "ref_id": s.ref_id, "evidence": s.evidence,
                "credential_kind": s.credential_kind, "credential_id": s.credential_id, "report_id": report_id,
                "recorded_at": now})
    changed = {row[0] for row in insert_many(conn, T_STATEMENTS, [rows[k] for k in sorted(rows)],
                                             skip_conflicts_on=STATEMENT_KEY, returning=("run_id",))}
    if changed - created:
        _resolve_facts(conn, sorted(changed - created))


def _resolve_facts(conn: Connection, run_ids: List[int]) -> None:
    """Set each run's four facts and their evidence from all its statements (one UPDATE, executemany)."""
    recorded: Dict[Tuple[int, str], List[Statement]] = {}
    for row in conn.execute(select(T_STATEMENTS).where(T_STATEMENTS.c.run_id.in_(run_ids))
                            .order_by(T_STATEMENTS.c.id)).mappings():
        recorded.setdefault((row["run_id"], row["fact"]), []).append(Statement(
            row["fact"], row["value"], row["ref_id"], row["evidence"], row["credential_kind"], row["credential_id"]))
    rows = []
    for run_id in run_ids:
        facts = _fact_columns({fact: recorded.get((run_id, fact), []) for fact in FACT_COLUMNS})
        rows.append({"p_id": run_id, **{f"p_{column}": value for column, value in facts.items()}})
    # bindparam names must not be column names of the SET clause: hence the p_ prefix
    conn.execute(update(T_RUNS).where(T_RUNS.c.id == bindparam("p_id"))
                 .values({column: bindparam(f"p_{column}") for column in _FACT_COLUMN_NAMES}), rows)


_FACT_COLUMN_NAMES = (*FACT_COLUMNS.values(), *(f"{fact}_evidence" for fact in FACT_COLUMNS))


def _fact_columns(recorded: Mapping[str, Sequence[Statement]]) -> Dict[str, Any]:
    """A run's fact and evidence columns from its statements (fact -> statements in recorded order)."""
    values: Dict[str, Any] = {}
    for fact, column in FACT_COLUMNS.items():
        shown, evidence = resolve(recorded.get(fact, ()))
        values[column] = None if shown is None else shown.ref_id if column.endswith("_id") else shown.value
        values[f"{fact}_evidence"] = evidence
    return values


def _run_facts(found: Sequence[Tuple[str, Statement]]) -> Dict[str, Any]:
    """The fact columns of a run whose only statements are ``found`` (this batch's), in the order
    ``_record_statements`` records them: one per key, sorted by key."""
    unique: Dict[Key, Statement] = {}
    for _, statement in found:
        unique.setdefault(statement.key, statement)
    recorded: Dict[str, List[Statement]] = {}
    for key in sorted(unique):
        recorded.setdefault(unique[key].fact, []).append(unique[key])
    return _fact_columns(recorded)


def _store_batch(conn: Connection, items: Sequence[_Typed], cache: DimensionCache,
                 learned: _Learned) -> List[Outcome]:
    now = datetime.now(timezone.utc)
    pushes_of = [_unique_pushes(sub.report.pushes) for sub, _ in items]
    first: Dict[str, int] = {}  # reportId -> the item stored: the first, or the first run-bound one
    for index, (sub, principal) in enumerate(items):
        chosen = first.get(sub.report_id)
        if chosen is None or (principal.kind in BOUND_KINDS and items[chosen][1].kind not in BOUND_KINDS):
            first[sub.report_id] = index
    stored = {row[0]: (row[1], row[2]) for row in select_by_keys(
        conn, T_REPORTS, ("id",), [(rid,) for rid in sorted(first)], ("id", "identity_kind", "body"))}
    refused: Dict[str, ReportConflict] = {}
    replaced: List[str] = []
    for rid, (stored_kind, stored_body) in sorted(stored.items()):
        sub, principal = items[first[rid]]
        if principal.kind in BOUND_KINDS and stored_kind not in BOUND_KINDS:
            # A verified report is never kept out, nor left claimed, by a claimed one sent first.
            replaced.append(rid)
            continue
        differences = _differences(stored_body, sub.body)
        if differences:
            refused[rid] = _conflict(rid, differences)
    dropped = _drop_reports(conn, replaced) if replaced else set()
    new = [_pending(items[i][0], items[i][1], pushes_of[i]) for rid, i in sorted(first.items())
           if rid not in stored or rid in replaced]
    org_of = _store_new(conn, new, cache, learned, now) if new else {}  # the reports this batch inserted
    # The explorer's visibility (which organisations pushed each digest) follows these pushes in this transaction.
    if dropped:
        refresh_digest_organizations(conn, dropped)
        forget_unpushed(conn, dropped)
    pushed = [(q.digest, org_of[p.report_id]) for p in new if p.report_id in org_of for q in p.pushes if q.digest]
    add_pushed_organizations(conn, pushed)
    add_pushed(conn, {digest for digest, _ in pushed})  # and the explorer's list of pushed digests
    outcomes: List[Outcome] = []
    for index, (sub, _) in enumerate(items):
        rid = sub.report_id
        differences = _differences(items[first[rid]][0].body, sub.body) if first[rid] != index else []
        if rid in refused or differences:
            outcomes.append(refused.get(rid) or _conflict(rid, differences))
        else:
            outcomes.append(IngestResult(rid, created=first[rid] == index and rid in org_of,
                                         pushes=len(pushes_of[index])))
    return outcomes


def _store_new(conn: Connection, new: List[_Pending], cache: DimensionCache, learned: _Learned,
               now: datetime) -> Dict[str, int]:
    """Rows of reports not stored yet; returns the reports this transaction inserted: id -> organisation id."""
    # organisations
    orgs = {}
    for p in new:
        orgs.setdefault(p.org, {"external_id": _text(p.context.organization.id),
                                "server_url": _text(p.context.server_url), "last_report_at": now})
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
                            {"external_id": _text(p.context.project.id), "last_report_at": now})
    project_ids = _resolve(conn, T_PROJECTS, ("organization_id", "name"), projects, cache, learned)
    pipelines = {}
    for p in new:
        pipelines.setdefault((project_ids[(org_ids[p.org], p.project)], p.pipeline),
                             {"name": _text(p.context.pipeline.name)})
    pipeline_ids = _resolve(conn, T_PIPELINES, ("project_id", "external_id"), pipelines, cache, learned)
    repositories = {}
    people = {}
    for p in new:
        if p.repository:
            repo = p.context.repository
            repositories.setdefault((org_ids[p.org], p.repository), {
                "name": _text(repo.name), "type": _text(repo.type), "external_id": _text(repo.id)})
        if p.person:
            person = p.context.requester
            people.setdefault((org_ids[p.org], p.person), {
                "name": _text(person.name), "email": _text(person.email), "external_id": _text(person.id)})
    repository_ids = _resolve(conn, T_REPOSITORIES, ("organization_id", "uri"), repositories, cache, learned)
    person_ids = _resolve(conn, T_PEOPLE, ("organization_id", "key"), people, cache, learned)

    # runs, with what each report states about its run's source facts, and jobs
    run_key_of: Dict[str, Key] = {}
    run_facts: Dict[Key, List[Dict[str, Any]]] = {}
    stated: Dict[Key, List[Tuple[str, Statement]]] = {}
    for p in new:
        run, repo = p.context.run, p.context.repository
        key = (pipeline_ids[(project_ids[(org_ids[p.org], p.project)], p.pipeline)], *p.run)
        run_key_of[p.report_id] = key
        run_facts.setdefault(key, []).append({
            "number": _text(run.number), "url": _text(run.url), "reason": _text(run.reason)})
        values = {"repository": (p.repository, repository_ids.get((org_ids[p.org], p.repository))),
                  "branch": (_text(repo.branch), None), "commit": (_text(repo.commit), None),
                  "requester": (p.person, person_ids.get((org_ids[p.org], p.person)))}
        found = stated.setdefault(key, [])
        for fact in SOURCE_FACTS:
            value, ref_id = values[fact]
            if value is not None:
                found.append((p.report_id, Statement(
                    fact, value[:m.REF_LEN], ref_id, p.evidence[fact], p.principal.kind, p.principal.subject[:512])))
    run_ids, created_runs = _resolve_runs(
        conn, {key: _first_facts(facts) for key, facts in run_facts.items()},
        {key: _run_facts(stated[key]) for key in run_facts}, cache, learned)
    statements = {run_ids[key]: found for key, found in stated.items() if found}
    _record_statements(conn, statements, cache, learned, now, created_runs)
    jobs = {}
    job_key_of: Dict[str, Key] = {}
    for p in new:
        job, agent = p.context.job, p.context.agent
        key = job_key_of[p.report_id] = (run_ids[run_key_of[p.report_id]], *p.job)
        jobs.setdefault(key, {"name": _text(job.name), "stage": _text(job.stage),
                              "agent_name": _text(agent.name), "agent_os": _text(agent.os),
                              "host_type": _text(agent.host_type)})
    job_ids = _resolve(conn, T_JOBS, ("run_id", "external_id", "attempt"), jobs, cache, learned)

    # the reports themselves: a report another transaction stored meanwhile is not inserted
    # again, and none of its pushes are (its shared rows above are the same rows either way)
    inserted = {row[0] for row in insert_many(
        conn, T_REPORTS,
        [{"id": p.report_id, "schema_version": p.submission.report.schema_version, "received_at": now,
          "identity_kind": p.principal.kind, "identity_subject": p.principal.subject[:512],
          "job_id": job_ids[job_key_of[p.report_id]], "body": p.submission.body,
          "evidence": {fact: p.evidence[fact] for fact in IDENTITY_FACTS}} for p in new],
        skip_conflicts_on=("id",), returning=("id",))}
    stored = [p for p in new if p.report_id in inserted]
    org_of = {p.report_id: org_ids[p.org] for p in stored}
    if not stored:
        return org_of

    # images, references, pushes, index -> platform relations
    digests = sorted({q.digest for p in stored for q in p.pushes if q.digest}
                     | {pl.digest for p in stored for q in p.pushes for pl in q.platforms})
    fresh = [d for d in digests if d not in cache.images]
    if fresh:
        insert_many(conn, T_IMAGES, [{"digest": d, "first_seen_at": now} for d in fresh],
                    skip_conflicts_on=("digest",))
    learned.images.update(digests)
    references = {(q.registry, q.repository, q.tag or ""): {} for p in stored for q in p.pushes}
    reference_ids = _resolve(conn, T_REFERENCES, ("registry", "repository", "tag"), references, cache, learned)
    rows = [{"report_id": p.report_id, "job_id": job_ids[job_key_of[p.report_id]],
             "reference_id": reference_ids[(q.registry, q.repository, q.tag or "")],
             "digest": q.digest, "reference": q.reference, "image_id": q.image_id,
             "pushed_at": _timestamp(q.pushed_at) or now, "labels": q.labels,
             "digest_error": q.digest_error}
            for p in stored for q in p.pushes]
    insert_many(conn, T_PUSHES, rows)
    relations = sorted({(q.digest, pl.digest): pl for p in stored for q in p.pushes if q.digest
                        for pl in q.platforms}.items())
    insert_many(conn, T_RELATIONS,
                [{"index_digest": index, "manifest_digest": manifest, "os": pl.os,
                  "architecture": pl.architecture, "variant": pl.variant, "source": "collector",
                  "recorded_at": now} for (index, manifest), pl in relations],
                skip_conflicts_on=("index_digest", "manifest_digest"))
    return org_of
