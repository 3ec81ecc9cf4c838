"""Remediation work items against a local Azure DevOps stand-in that checks each request."""

from __future__ import annotations

import dataclasses
import socket
import threading
from typing import Dict, List, Optional

import pytest

from imagetrail.settings import Settings
from tests.cloud import scenario
from tests.cloud.support import ingester
from tests.support.azure_devops import AzureDevOpsServer

PAT = "test-pat-0123456789"


def configure(api, **settings) -> None:
    """What IMAGETRAIL_* variables would have set at startup (the app reads its Settings once)."""
    api.app.state.settings = dataclasses.replace(api.app.state.settings, **settings)


@pytest.fixture
def devops(api):
    """The contoso stand-in, trusted as an Azure DevOps Server collection."""
    with AzureDevOpsServer("contoso", PAT) as server:
        configure(api, azure_devops_pat=PAT, azure_devops_server_urls=[server.url])
        yield server


class RecordingServer:
    """A TCP server on 127.0.0.1 that records every connection and the bytes it received, and answers none."""

    def __init__(self):
        self.received: List[bytes] = []
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}/contoso"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except socket.timeout:
                continue
            with connection:
                connection.settimeout(2)
                data = b""
                try:
                    while b"\r\n\r\n" not in data and len(data) < 65536:
                        chunk = connection.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass
                self.received.append(data)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._socket.close()


def load_estate(api, server_url: Optional[str], per_organization: Optional[Dict[str, str]] = None):
    """The scenario; each run reports ``server_url`` (or its organisation's URL) as its serverUrl."""
    from imagetrail.ingest import cloud as store
    from imagetrail.ingest.reports import ingest_report
    from imagetrail.parsers.scans import parse_report
    from imagetrail.store.db import transaction

    sessions = api.app.state.sessions
    for body in scenario.reports(server_url=server_url + "/" if server_url else None):
        organization = body["context"]["organization"]["name"]
        if per_organization and organization in per_organization:
            body["context"]["serverUrl"] = per_organization[organization]
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


def test_without_a_pat_the_server_says_what_to_set(api):
    configure(api, azure_devops_pat=None)
    response = api.client.post("/v1/remediations", json={"filters": {}})
    assert response.status_code == 503 and "IMAGETRAIL_AZURE_DEVOPS_PAT" in response.json()["detail"]


def test_a_refusing_server_is_a_failed_outcome_without_the_pat(api, devops):
    load_estate(api, devops.url)
    configure(api, azure_devops_pat="wrong-pat-value")
    (outcome,) = remediate(api, filters={"exposed": True})
    assert outcome["status"] == "failed"
    assert "wrong-pat-value" not in outcome["reason"]
    assert devops.created == []


def test_a_server_url_nobody_trusted_gets_no_request_while_the_trusted_one_gets_the_work_item(api, devops):
    # fabrikam's run says its collection is another server (say, one whoever submitted the report
    # controls): the PAT must not go there, not even a first request without it.
    with RecordingServer() as untrusted:
        load_estate(api, devops.url, per_organization={"fabrikam": untrusted.url + "/"})
        body = {"filters": {"exposed": True, "min_severity": "medium"}}
        planned = {o["digest"]: o for o in remediate(api, dry_run=True, **body)}
        outcomes = {o["digest"]: o for o in remediate(api, **body)}
    for answer in (planned, outcomes):
        svc = answer[scenario.SVC]
        assert (svc["status"], svc["organization"]) == ("skipped", "fabrikam"), svc
        assert svc["reason"].startswith(
            "not remediable: organisation URL not trusted (set IMAGETRAIL_AZURE_DEVOPS_SERVER_URLS)"
        )
        assert untrusted.url in svc["reason"]
    assert planned[scenario.WEB]["status"] == "would-create"
    assert outcomes[scenario.WEB]["status"] == "created"
    assert untrusted.received == []  # not one connection, so no Authorization header either
    assert not any(b"authorization" in data.lower() for data in untrusted.received)
    assert devops.errors == [] and [item["project"] for item in devops.created] == ["shop"]
    assert outcomes[scenario.WEB]["work_item_url"] == f"{devops.url}/shop/_workitems/edit/1"


def test_a_run_of_azure_devops_services_goes_to_the_configured_url_not_the_reported_host(
    api, devops
):
    # The reports say https://dev.azure.com/contoso/ (the default serverUrl of the scenario); the
    # configured IMAGETRAIL_AZURE_DEVOPS_URL (here the stand-in's root, which serves /contoso/...) is
    # where the request goes. No Server collection is trusted.
    root = devops.url.rsplit("/", 1)[0]
    configure(api, azure_devops_server_urls=[], azure_devops_url=root + "/")
    load_estate(api, None)
    (outcome,) = remediate(api, filters={"exposed": True})
    assert outcome["status"] == "created", outcome
    assert outcome["work_item_url"] == f"{root}/contoso/shop/_workitems/edit/1"
    assert devops.errors == [] and len(devops.created) == 1


def test_a_malformed_trusted_server_url_is_a_configuration_error_naming_the_setting(api):
    env = {"IMAGETRAIL_AZURE_DEVOPS_SERVER_URLS": "https://tfs.example.com/tfs/Default, tfs.example"}
    configure(api, azure_devops_server_urls=Settings.from_env(env).azure_devops_server_urls)
    response = api.client.post("/v1/remediations", json={"filters": {}, "dry_run": True})
    assert response.status_code == 503
    assert "IMAGETRAIL_AZURE_DEVOPS_SERVER_URLS" in response.json()["detail"]
    assert "tfs.example" in response.json()["detail"]


SERVICES = "https://dev.azure.com"
COLLECTION = "https://tfs.example.com/tfs/DefaultCollection"


@pytest.mark.parametrize(
    "organization, server_url, expected",
    [
        ("contoso", None, f"{SERVICES}/contoso"),
        ("contoso", "https://dev.azure.com/contoso/", f"{SERVICES}/contoso"),
        ("contoso", "HTTPS://Dev.Azure.COM/Contoso", f"{SERVICES}/contoso"),
        ("contoso", "https://contoso.visualstudio.com/", f"{SERVICES}/contoso"),
        ("Default", "https://TFS.example.com/tfs/DefaultCollection/", COLLECTION),
        ("Default", COLLECTION, COLLECTION),
        # Path case is compared exactly, as the setting asks.
        ("Default", "https://tfs.example.com/TFS/DefaultCollection", None),
        ("Default", "https://tfs.example.com/tfs/DefaultCollection?x=1", None),
        ("contoso", "https://evil.example/contoso/", None),
        ("contoso", "https://dev.azure.com@evil.example/contoso", None),
        ("contoso", "https://dev.azure.com.evil.example/contoso", None),
        ("contoso", "https://dev.azure.com/fabrikam/", None),
        ("contoso", "http://dev.azure.com/contoso/", None),
        ("contoso", "https://evil.visualstudio.com/", None),
        # The organisation name becomes a path segment: it must not change the host or the path.
        ("evil.example/x", None, None),
        ("..", None, None),
        ("a@b", None, None),
    ],
)
def test_only_configured_organisation_urls_are_trusted(organization, server_url, expected):
    from imagetrail.services.remediation import server_collection_urls, trusted_organization_url

    env = {"IMAGETRAIL_AZURE_DEVOPS_SERVER_URLS": f" {COLLECTION}/ ,"}
    servers = server_collection_urls(Settings.from_env(env).azure_devops_server_urls)
    assert trusted_organization_url(SERVICES + "/", servers, organization, server_url) == expected


def test_work_items_say_how_facts_are_known_and_never_assign_a_disputed_owner(api, devops):
    """issue 9, Why 1: a second credential named another requester for run 101; nobody is assigned."""
    from imagetrail.auth import SCOPE_INGEST, Principal
    from imagetrail.ingest.reports import ingest_report
    from imagetrail.report import compute_report_id
    from tests.cloud.support import pipeline_report

    load_estate(api, devops.url)
    other = pipeline_report("contoso", "shop", "101", [], server_url=devops.url + "/",
                            requester_email="victim@example.com", commit="c0ffee" + "0" * 34)
    other["context"]["job"] = {"id": "job-2", "name": "Other", "attempt": 1, "stage": None}
    other["reportId"] = compute_report_id(other)
    second = Principal(kind="api-key", subject="key:second", scopes=frozenset({SCOPE_INGEST}), organizations=None)
    ingest_report(api.app.state.sessions, other, second)

    (plan,) = remediate(api, filters={"exposed": True}, dry_run=True)
    assert plan["assigned_to"] is None
    (outcome,) = remediate(api, filters={"exposed": True})
    assert outcome["status"] == "created", outcome
    fields = devops.created[0]["fields"]
    assert "System.AssignedTo" not in fields
    description = fields["System.Description"]
    assert "disputed: requester; claimed: organization, project, pipeline, run, repository, branch, commit" \
        in description
    assert "the item is not assigned" in description
