"""Remediation work items against a local Azure DevOps stand-in that checks each request."""

from __future__ import annotations

import pytest

from tests.cloud import scenario
from tests.cloud.azure_devops_server import AzureDevOpsServer
from tests.cloud.support import ingester

PAT = "test-pat-0123456789"


@pytest.fixture
def devops(monkeypatch):
    with AzureDevOpsServer("contoso", PAT) as server:
        monkeypatch.setenv("IMAGETRAIL_AZURE_DEVOPS_PAT", PAT)
        yield server


def load_estate(api, server_url):
    from imagetrail.cloud import store
    from imagetrail.cloud.scans import parse_report
    from imagetrail.server.db import transaction
    from imagetrail.server.ingest import ingest_report

    sessions = api.app.state.sessions
    for body in scenario.reports(server_url=server_url + "/"):
        ingest_report(sessions, body, ingester())
    with transaction(sessions) as session:
        store.replace_inventory(session, scenario.inventory())
    for name, data in scenario.scans():
        with transaction(sessions) as session:
            store.ingest_scan(session, parse_report(data, name), name)


def remediate(api, **body):
    response = api.client.post("/v1/remediations", json=body)
    assert response.status_code == 200, response.text
    return response.json()["outcomes"]


def test_dry_run_creates_nothing(api, devops):
    load_estate(api, devops.url)
    outcomes = remediate(api, filters={"exposed": True}, dry_run=True)
    assert [(o["status"], o["digest"]) for o in outcomes] == [("would-create", scenario.WEB)]
    assert outcomes[0]["assigned_to"] == "alice@contoso.example"
    assert devops.requests == []


def test_one_work_item_per_image_never_twice_and_again_when_the_cves_change(api, devops):
    load_estate(api, devops.url)
    (outcome,) = remediate(api, filters={"exposed": True})
    assert outcome["status"] == "created" and outcome["work_item_id"] == 1, outcome
    assert devops.errors == []
    (item,) = devops.created
    assert (item["project"], item["type"]) == ("shop", "Bug")
    fields = item["fields"]
    assert fields["System.Tags"] == "imagetrail; critical"
    assert fields["System.AssignedTo"] == "alice@contoso.example"
    assert fields["System.Title"].startswith("[ImageTrail] 1 critical+ vulnerabilities in shop/web@")
    for text in (
        "CVE-2021-36159",
        "2.10.7-r0",
        "Service prod/public type=LoadBalancer 203.0.113.10",
        "c0ffee",
    ):
        assert text in fields["System.Description"]
    assert item["relations"] == [
        {"rel": "ArtifactLink", "url": "vstfs:///Build/Build/101", "attributes": {"name": "Build"}}
    ]

    (again,) = remediate(api, filters={"exposed": True})
    assert (again["status"], again["work_item_id"]) == ("exists", 1)
    assert len(devops.created) == 1

    changed = scenario.trivy_report(scenario.ALPINE, scenario.WEB, "2024-08-01T00:00:00Z").replace(
        b"CVE-2021-36159", b"CVE-2099-0001"
    )
    assert api.client.post("/v1/scans", params={"file_name": "web2.json"}, content=changed).status_code == 201
    (third,) = remediate(api, filters={"exposed": True}, work_item_type="Issue")
    assert (third["status"], third["work_item_id"]) == ("created", 2)
    assert devops.created[1]["type"] == "Issue"
    assert "since work item #1" in devops.created[1]["fields"]["System.Description"]


def test_without_a_pat_the_server_says_what_to_set(api, monkeypatch):
    monkeypatch.delenv("IMAGETRAIL_AZURE_DEVOPS_PAT", raising=False)
    response = api.client.post("/v1/remediations", json={"filters": {}})
    assert response.status_code == 503 and "IMAGETRAIL_AZURE_DEVOPS_PAT" in response.json()["detail"]


def test_a_refusing_server_is_a_failed_outcome_without_the_pat(api, devops, monkeypatch):
    load_estate(api, devops.url)
    monkeypatch.setenv("IMAGETRAIL_AZURE_DEVOPS_PAT", "wrong-pat-value")
    (outcome,) = remediate(api, filters={"exposed": True})
    assert outcome["status"] == "failed"
    assert "wrong-pat-value" not in outcome["reason"]
    assert devops.created == []
