"""Evidence in the explorer's exports: the web CSV, the query API and the CLI's CSV rows."""

from __future__ import annotations

import csv
import io

from imagetrail.client.query import explorer_rows
from imagetrail.views.explorer import ExplorerPage
from imagetrail.web import explorer_view
from tests.cloud import scenario
from tests.cloud.support import ADMIN
from tests.cloud.test_remediation import load_estate

ALL_CLAIMED = "claimed: organization, project, pipeline, run, repository, branch, commit, requester"


def test_csv_exports_and_query_rows_carry_evidence(api):
    load_estate(api, None)  # reported with an API key: every fact is claimed
    answer = api.client.get("/v1/query", params={"exposed": True})
    assert answer.status_code == 200, answer.text
    row = next(r for r in answer.json()["rows"] if r["digest"] == scenario.WEB)
    assert row["trail"]["evidence"] == dict.fromkeys(
        ("organization", "project", "pipeline", "run", "repository", "branch", "commit", "requester"), "claimed")
    cli_rows = explorer_rows(ExplorerPage.model_validate(answer.json()), wide=True)
    cli_row = next(r for r in cli_rows if r["digest"] == scenario.WEB)
    assert cli_row["evidence"] == ALL_CLAIMED

    query = explorer_view.ExplorerRequest.from_params({"exposed": "true"})
    text = "".join(explorer_view.csv_lines(api.app.state.sessions, ADMIN, query))
    exported = [r for r in csv.DictReader(io.StringIO(text)) if r["digest"] == scenario.WEB]
    assert exported and {r["evidence"] for r in exported} == {ALL_CLAIMED}
