"""Ingest on typed reports: ``Report.from_dict``, and a new run stored with its evidence resolved.

On SQLite and on the real PostgreSQL (the ``client`` fixture runs on both).
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from imagetrail.auth import Principal
from imagetrail.facts import CLAIMED, DISPUTED
from imagetrail.ingest.reports import T_RUNS, IngestResult, Submission, _resolve_facts, store_reports
from imagetrail.report import Agent, CollectorInfo, Person, Platform, Report
from tests.server.reports import ado_report, body, digest, github_report, push

ADMIN = Principal(kind="api-key", subject="key:one", scopes=frozenset({"admin"}), organizations=None)
OTHER = Principal(kind="api-key", subject="key:two", scopes=frozenset({"admin"}), organizations=None)
RUN_COLUMNS = ("repository_id", "branch", "commit", "requester_id",
               "repository_evidence", "branch_evidence", "commit_evidence", "requester_evidence")


def _reports():
    index = ado_report(pushes=[push("a.example/x/app:1", digest("index"),
                                    platforms=[Platform(digest("amd64"), "linux", "amd64", None),
                                               Platform(digest("arm"), "linux", "arm", "v7")]),
                               push("a.example/x/app:2", None)])
    index.context.agent = Agent("agent-7", "Linux", "build")
    index.collector = CollectorInfo(version="1.2.3", discovery=["watcher", "events"])
    index.warnings = ["the registry was slow"]
    index.generated_at = "2026-11-30T09:00:00Z"
    return [ado_report(), github_report(), index]


@pytest.mark.parametrize("report", _reports(), ids=["azure-devops", "github", "index-and-unresolved"])
def test_from_dict_gives_back_the_report_its_json_was_made_of(report):
    sent = json.loads(json.dumps(report.to_dict()))  # as the backend receives it
    typed = Report.from_dict(sent)
    assert typed == report
    assert typed.to_dict() == sent
    assert typed.report_id == sent["reportId"]


def test_from_dict_gives_absent_optional_sections_their_defaults():
    sent = body(ado_report())
    for key in ("collector", "warnings", "generatedAt"):
        sent.pop(key, None)
    sent["context"].pop("agent", None)
    typed = Report.from_dict(sent)
    assert typed.context.agent == Agent()
    assert typed.collector == CollectorInfo()
    assert typed.warnings == [] and typed.generated_at is None
    assert typed.pushes[0].digest == sent["pushes"][0]["digest"]


def test_a_body_that_is_not_a_report_is_that_item_s_error_not_the_batch_s(client):
    good = body(ado_report(run_id="500"))
    outcomes = store_reports(client.app.state.sessions, [({"context": {}}, ADMIN), (good, ADMIN)])
    assert isinstance(outcomes[0], KeyError)
    assert outcomes[1] == IngestResult(good["reportId"], created=True, pushes=1)


def _runs(engine):
    with engine.connect() as conn:
        rows = conn.execute(sa.select(T_RUNS.c.external_id, *(T_RUNS.c[name] for name in RUN_COLUMNS))
                            .order_by(T_RUNS.c.id)).all()
    return {row[0]: dict(zip(RUN_COLUMNS, row[1:])) for row in rows}


def test_a_new_run_is_stored_with_what_its_statements_resolve_to(client):
    """A run created in a batch gets its facts with its INSERT; re-resolving them from the recorded
    statements (what a run seen before gets) must change nothing."""
    sessions, engine = client.app.state.sessions, client.app.state.engine
    batch = [
        (body(ado_report(run_id="77", job="B", commit="b" * 40)), OTHER),
        (body(ado_report(run_id="77", job="A", commit="a" * 40)), ADMIN),
        (body(ado_report(run_id="77", job="C", commit="a" * 40,
                         requester=Person("u2", "Bo Other", "bo@contoso.example"))), ADMIN),
        (body(ado_report(run_id="78")), ADMIN),
    ]
    outcomes = store_reports(sessions, batch)
    assert all(isinstance(o, IngestResult) and o.created for o in outcomes), outcomes
    stored = _runs(engine)
    assert stored["77"]["commit"] == "a" * 40  # two claimed values: the first recorded (sorted) is shown
    assert stored["77"]["commit_evidence"] == DISPUTED
    assert stored["77"]["requester_evidence"] == DISPUTED
    assert stored["78"]["commit"] == "a" * 40 and stored["78"]["commit_evidence"] == CLAIMED
    assert stored["78"]["repository_id"] is not None and stored["78"]["requester_id"] is not None
    with engine.begin() as conn:
        run_ids = [row[0] for row in conn.execute(sa.text("SELECT id FROM runs"))]
        _resolve_facts(conn, run_ids)
    assert _runs(engine) == stored

    # a run seen before still takes a new statement and is re-resolved
    later = body(ado_report(run_id="78", job="Deploy", commit="c" * 40))
    assert store_reports(sessions, [(later, OTHER)])[0].created
    assert _runs(engine)["78"]["commit_evidence"] == DISPUTED
    assert _runs(engine)["78"]["commit"] == "a" * 40


def test_a_submission_is_stored_like_its_body(client):
    sessions = client.app.state.sessions
    sent = body(ado_report(run_id="600"))
    outcome = store_reports(sessions, [(Submission.of(sent, ADMIN), ADMIN)])[0]
    assert outcome == IngestResult(sent["reportId"], created=True, pushes=1)
    again = store_reports(sessions, [(sent, ADMIN)])[0]
    assert again == IngestResult(sent["reportId"], created=False, pushes=1)
