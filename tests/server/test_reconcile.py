"""`imagetrail reconcile` against a local Azure DevOps stand-in and the real backend."""

from __future__ import annotations

import json

import pytest
import requests

from tests.server.fake_azure_devops import FakeAzureDevOps
from tests.server.reports import ado_report, body, digest, push
from tests.server.test_serve_e2e import cli, create_key
from tests.support.live_server import running_server

pytestmark = pytest.mark.e2e


def test_reports_attached_to_runs_are_ingested_once(sqlite_url, tmp_path):
    kept = [ado_report(run_id=str(200 + i), pushes=[push("127.0.0.1:5000/web/app:1", digest(f"r{i}"))])
            for i in range(3)]
    with FakeAzureDevOps("contoso", "Web", pat="secret-pat") as ado, running_server(sqlite_url) as url:
        ado.builds = {
            200: [(f"report-{kept[0].report_id[7:19]}.json", json.dumps(body(kept[0])).encode())],
            201: [(f"report-{kept[1].report_id[7:19]}.json", json.dumps(body(kept[1])).encode()),
                  ("report-broken.json", b"{truncated")],
            202: [],
            203: [(f"report-{kept[2].report_id[7:19]}.json", json.dumps(body(kept[2])).encode())],
        }
        key = create_key(sqlite_url, "contoso", "ingest")
        headers = {"Authorization": f"Bearer {key}"}
        assert requests.post(url + "/v1/reports", json=body(kept[2]), headers=headers).status_code == 201
        env = {"IMAGETRAIL_URL": url, "IMAGETRAIL_API_KEY": key, "AZURE_DEVOPS_PAT": "secret-pat",
               "AZURE_DEVOPS_CACHE_DIR": str(tmp_path / "ado-cache")}
        first = cli("reconcile", "--org-url", ado.org_url, "--project", "Web", "--since", "3", env=env)
        assert "2 new, 1 already stored, 1 failed" in first.stdout, first.stdout + first.stderr
        assert first.returncode == 1 and "report-broken.json" in first.stderr
        ado.builds[201].pop()
        second = cli("reconcile", "--org-url", ado.org_url, "--project", "Web", env=env)
        assert second.returncode == 0 and "0 new, 3 already stored, 0 failed" in second.stdout
        assert ado.violations == []
        assert any("minTime=" in r and "/Web/_apis/build/builds?" in r for r in ado.requests)
        for report in kept:
            trail = requests.get(url + "/v1/trail", params={"reference": "127.0.0.1:5000/web/app:1"},
                                 headers={"Authorization": f"Bearer {create_key(sqlite_url, '*', 'read')}"})
            assert report.report_id in {p["evidence"]["report_id"] for p in trail.json()["pushes"]}
            break


def test_a_wrong_pat_is_reported_clearly(sqlite_url, tmp_path):
    with FakeAzureDevOps("contoso", "Web", pat="right") as ado:
        result = cli("reconcile", "--org-url", ado.org_url, "--project", "Web",
                     env={"AZURE_DEVOPS_PAT": "wrong", "AZURE_DEVOPS_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert "Azure DevOps request failed" in result.stderr and "wrong" not in result.stderr
    missing = cli("reconcile", "--org-url", "https://dev.azure.com/x", "--project", "P",
                  env={"AZURE_DEVOPS_PAT": ""})
    assert missing.returncode == 2 and "AZURE_DEVOPS_PAT" in missing.stderr
