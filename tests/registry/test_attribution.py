"""Deriving claims from labels and SLSA provenance (pure), and the attribution worker's registry policy."""

from __future__ import annotations

import http.server
import threading
import time

import sqlalchemy as sa

from imagetrail.parsers.attribution import (
    KIND_AZURE,
    KIND_OCI,
    KIND_PROVENANCE,
    azure_organization,
    from_labels,
    from_provenance,
)
from imagetrail.remote.oci_registry import RegistryClient, RegistryNotAllowed, _endpoint
from tests.registry.oci import github_provenance
from tests.registry.test_api import envelope, post, push_event
from tests.server.conftest import new_key
from tests.server.reports import digest
from tests.support.live_server import free_port

DIGEST = "sha256:" + "e" * 64
RUN_URL = "https://github.com/octo-org/app/actions/runs/9001/attempts/2"


def test_docker_at_2_labels():
    [claim] = from_labels({
        "com.azure.dev.image.build.builduri": "vstfs:///Build/Build/4711",
        "com.azure.dev.image.build.buildnumber": "20261130.3",
        "com.azure.dev.image.build.definitionname": "shop-ci",
        "com.azure.dev.image.build.repository.uri": "https://dev.azure.com/fabrikam/Shop/_git/shop",
        "com.azure.dev.image.build.repository.name": "shop",
        "com.azure.dev.image.build.sourcebranchname": "main",
        "com.azure.dev.image.build.sourceversion": "ABCDEF1234567",
        "com.azure.dev.image.system.teamfoundationcollectionuri": "https://dev.azure.com/fabrikam/",
        "com.azure.dev.image.system.teamproject": "Shop",
    }, "labels of config x")
    assert (claim.kind, claim.evidence, claim.source) == (KIND_AZURE, "claimed", "labels of config x")
    assert claim.facts == {
        "system": "azure-devops", "server_url": "https://dev.azure.com/fabrikam/", "organization": "fabrikam",
        "project": "Shop", "pipeline": "shop-ci", "run_id": "4711", "run_number": "20261130.3",
        "repository_uri": "https://dev.azure.com/fabrikam/Shop/_git/shop", "repository": "shop", "branch": "main",
        "commit": "abcdef1234567"}


def test_malformed_labels_keep_only_what_is_well_formed():
    [claim] = from_labels({"com.azure.dev.image.build.builduri": "vstfs:///Build/Build/not-a-number",
                           "com.azure.dev.image.build.sourceversion": "; rm -rf /",
                           "com.azure.dev.image.system.teamfoundationcollectionuri": "https://dev.azure.com/x",
                           "org.opencontainers.image.source": 42}, "s")
    assert "run_id" not in claim.facts and "commit" not in claim.facts
    [oci] = from_labels({"org.opencontainers.image.source": "https://x.example/\x1b[2Jrepo"}, "s")
    assert oci.facts["repository_uri"] == "https://x.example/[2Jrepo"
    assert from_labels({"maintainer": "someone"}, "s") == []


def test_oci_labels_on_github():
    [claim] = from_labels({"org.opencontainers.image.source": "https://github.com/Octo-Org/App",
                           "org.opencontainers.image.revision": "b" * 40,
                           "org.opencontainers.image.created": "2026-11-30T06:00:00Z"}, "s")
    assert claim.kind == KIND_OCI
    assert claim.facts == {"repository_uri": "https://github.com/Octo-Org/App", "commit": "b" * 40,
                           "created": "2026-11-30T06:00:00Z", "system": "github", "organization": "octo-org",
                           "project": "Octo-Org/App"}


def test_collection_uris():
    assert azure_organization("https://dev.azure.com/Contoso/") == "contoso"
    assert azure_organization("https://contoso.visualstudio.com/") == "contoso"
    assert azure_organization("https://tfs.contoso.example/tfs/DefaultCollection/") == "defaultcollection"
    assert azure_organization(None) is None


def test_provenance_v02_and_v1_name_the_github_run_and_commit():
    for version in ("v0.2", "v1"):
        claim = from_provenance(github_provenance(DIGEST, version, RUN_URL, "octo-org/app", "c" * 40), "att")
        assert claim.kind == KIND_PROVENANCE and claim.evidence == "claimed"
        facts = claim.facts
        assert (facts["run_id"], facts["run_attempt"], facts["organization"], facts["project"]) == (
            "9001", 2, "octo-org", "octo-org/app")
        assert (facts["repository_uri"], facts["commit"], facts["builder_id"]) == (
            "https://github.com/octo-org/app.git", "c" * 40, RUN_URL)
        assert facts["materials"] == [{"uri": "pkg:docker/alpine@3.20", "digest": "sha256:" + "c" * 64}]


def test_other_statements_are_not_provenance():
    assert from_provenance({"predicateType": "https://spdx.dev/Document", "predicate": {}}, "s") is None
    assert from_provenance({"predicateType": "https://slsa.dev/provenance/v1", "predicate": "x"}, "s") is None


def test_client_policy_allowlist_and_plain_http():
    client = RegistryClient(allowed=["registry.contoso.example"], insecure=["lab.contoso.example:5000"])
    try:
        client.manifest("evil.example", "x", DIGEST)
        raise AssertionError("fetched from a registry outside the allowlist")
    except RegistryNotAllowed as exc:
        assert "IMAGETRAIL_REGISTRIES" in str(exc)
    assert _endpoint("registry.contoso.example") == "https://registry.contoso.example"
    assert _endpoint("lab.contoso.example:5000", ["lab.contoso.example:5000"]) == "http://lab.contoso.example:5000"
    assert _endpoint("127.0.0.1:5000") == "http://127.0.0.1:5000"


def settled(client):
    """(status, detail) of the one queued digest once the worker is done with it."""
    deadline = time.monotonic() + 10
    while True:
        with client.app.state.engine.connect() as conn:
            status, detail = conn.execute(sa.text("SELECT status, detail FROM registry_artifacts")).one()
        if status not in ("pending", "working") or time.monotonic() > deadline:
            return status, detail
        time.sleep(0.05)


class _Counting(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self):  # noqa: N802 (http.server's naming)
        type(self).hits += 1
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_worker_never_contacts_a_registry_outside_the_allowlist(make_client):
    port = free_port()
    server = http.server.HTTPServer(("127.0.0.1", port), _Counting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = make_client(registries=["registry.contoso.example"])
        key = new_key(client, "*", "registry")
        assert post(client, key, envelope(push_event("x1", "a/b", "1", digest("x"), registry=f"127.0.0.1:{port}"))
                    ).json()["stored"] == 1
        status, detail = settled(client)
        assert status == "not-allowed" and "IMAGETRAIL_REGISTRIES" in detail
        assert _Counting.hits == 0
        # The untraced push says why nothing was read.
        page = client.get("/v1/coverage/untraced-pushes", headers=new_key(client, "*", "read")).json()
        assert [(p["attribution"], p["registry"]) for p in page["pushes"]] == [("not-allowed", f"127.0.0.1:{port}")]
    finally:
        server.shutdown()



def test_digests_refused_earlier_are_read_once_their_registry_is_allowed(make_client):
    first = make_client(registries=[])
    key = new_key(first, "*", "registry")
    post(first, key, envelope(push_event("late1", "a/b", "1", digest("late"), registry="late.example")))
    assert settled(first)[0] == "not-allowed"
    second = make_client(registries=["late.example"])  # a restart with the registry now allowed
    second.app.state.attribution._requeue_allowed()
    with second.app.state.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM registry_artifacts")).scalar_one() == "pending"
