"""The trace: digests, index <-> platform manifests, references newest first, listings, links."""

from __future__ import annotations

import pytest

from imagetrail.queries.trace import commit_link, run_link
from imagetrail.report import Platform
from tests.server.conftest import new_key
from tests.server.reports import ADO_ORG_ID, ado_report, body, digest, github_report, push

INDEX, AMD64, ARM64 = digest("index"), digest("amd64"), digest("arm64")


@pytest.fixture
def stored(client, admin):
    reports = [
        ado_report(run_id="100", pushes=[push("127.0.0.1:5000/web/app:1.0", INDEX, pushed_at="2024-06-01T10:00:00Z",
                                              platforms=[Platform(AMD64, "linux", "amd64"),
                                                         Platform(ARM64, "linux", "arm64", "v8")])]),
        ado_report(run_id="101", pushes=[push("127.0.0.1:5000/web/app:1.0", digest("newer"),
                                              pushed_at="2024-06-02T10:00:00Z")]),
        ado_report(org="fabrikam", org_id="00000000-1111-4222-8333-444444444444", run_id="7",
                   pushes=[push("127.0.0.1:5000/web/app:1.0", INDEX, pushed_at="2024-06-03T10:00:00Z")]),
    ]
    for report in reports:
        assert client.post("/v1/reports", json=body(report), headers=admin).status_code == 201
    return reports


def test_a_platform_digest_finds_the_push_of_its_index(client, admin, stored):
    trail = client.get(f"/v1/images/{ARM64}/trail", headers=admin).json()
    assert [(p["run"]["id"], p["matched_by"], p["digest"]) for p in trail["pushes"]] == [
        ("7", "index", INDEX), ("100", "index", INDEX)]
    assert trail["related"] == [{"digest": INDEX, "relation": "index", "os": None, "architecture": None,
                                 "variant": None}]
    push = trail["pushes"][1]
    assert push["organization"] == "contoso" and push["project"] == "Web"
    assert push["run"]["url"] == "https://dev.azure.com/contoso/Web/_build/results?buildId=100"
    assert push["source"]["commit_url"] == "https://dev.azure.com/contoso/Web/_git/web/commit/" + "a" * 40
    assert push["requester"] == {"name": "Ann Owner", "email": "ann@contoso.example"}
    assert push["evidence"]["report_id"] == stored[0].report_id
    assert push["evidence"]["identity_kind"] == "api-key"


def test_an_index_digest_lists_its_platforms(client, admin, stored):
    trail = client.get(f"/v1/images/{INDEX}/trail", headers=admin).json()
    assert {(r["digest"], r["relation"], r["architecture"]) for r in trail["related"]} == {
        (AMD64, "platform", "amd64"), (ARM64, "platform", "arm64")}
    assert {p["matched_by"] for p in trail["pushes"]} == {"digest"}


def test_reference_trail_is_newest_first_and_filtered_by_reader(client, admin, stored):
    trail = client.get("/v1/trail", params={"reference": "127.0.0.1:5000/web/app:1.0"}, headers=admin).json()
    assert [p["run"]["id"] for p in trail["pushes"]] == ["7", "101", "100"]
    contoso = new_key(client, "contoso", "read")
    mine = client.get("/v1/trail", params={"reference": "127.0.0.1:5000/web/app:1.0"}, headers=contoso).json()
    assert [p["run"]["id"] for p in mine["pushes"]] == ["101", "100"]
    assert mine["digest"] == digest("newer")
    by_digest = client.get("/v1/trail", params={"reference": f"127.0.0.1:5000/web/app@{AMD64}"}, headers=contoso)
    assert [p["run"]["id"] for p in by_digest.json()["pushes"]] == ["100"]


def test_unknown_and_malformed_queries(client, admin, stored):
    assert client.get(f"/v1/images/{digest('unknown')}/trail", headers=admin).json()["pushes"] == []
    bad = client.get("/v1/images/sha256:xyz/trail", headers=admin)
    assert bad.status_code == 422 and "sha256:<64 hex digits>" in bad.json()["detail"]
    assert client.get("/v1/trail", params={"reference": "UPPER CASE!"}, headers=admin).status_code == 422
    assert client.get("/v1/images", headers=admin).status_code == 422


def test_listing_by_repository_pipeline_and_run(client, admin, stored):
    by_repo = client.get("/v1/images", params={"repository": "127.0.0.1:5000/web/app"}, headers=admin).json()
    assert [row["run"]["id"] for row in by_repo] == ["7", "101", "100"]
    by_pipeline = client.get("/v1/images", params={"pipeline": "web-ci", "organization": "contoso"},
                             headers=admin).json()
    assert [row["run"]["id"] for row in by_pipeline] == ["101", "100"]
    by_run = client.get("/v1/images", params={"run": "100"}, headers=admin).json()
    assert [(row["digest"], row["commit"], row["requester"]) for row in by_run] == [
        (INDEX, "a" * 40, "ann@contoso.example")]


def test_github_runs_link_to_actions(client, admin):
    report = github_report()
    assert client.post("/v1/reports", json=body(report), headers=admin).status_code == 201
    push = client.get("/v1/trail", params={"reference": "ghcr.io/octo-org/app:1.0"}, headers=admin).json()["pushes"][0]
    assert push["run"]["url"] == "https://github.com/octo-org/app/actions/runs/9001"
    assert push["source"]["commit_url"] == "https://github.com/octo-org/app/commit/" + "b" * 40


def test_links_are_only_made_from_http_urls():
    assert run_link("azure-devops", "javascript:alert(1)//", "Web", "1", None) is None
    assert run_link("azure-devops", "https://dev.azure.com/o/", "My Project", "5", None) == \
        "https://dev.azure.com/o/My%20Project/_build/results?buildId=5"
    assert commit_link("azure-devops", None, "p", "https://bitbucket.org/o/r.git", "Bitbucket", "c" * 40) == \
        "https://bitbucket.org/o/r/commits/" + "c" * 40
    assert commit_link("azure-devops", None, "p", "https://example.com/svn", "Svn", "c" * 40) is None
    assert commit_link("azure-devops", None, "p", "https://dev.azure.com/o/p/_git/r", "TfsGit", "not-a-sha") is None


def test_org_ids_are_not_confused_with_names(client, admin, stored):
    reader = new_key(client, ADO_ORG_ID, "read")
    assert client.get("/v1/images", params={"run": "100"}, headers=reader).json() == []


def test_an_empty_answer_says_when_permissions_hid_pushes(client, admin, stored):
    # Only fabrikam pushed this digest: a contoso reader sees nothing, and is told why (not by whom).
    only_fabrikam = digest("fabrikam-only")
    report = ado_report(org="fabrikam", org_id="00000000-1111-4222-8333-444444444444", run_id="8",
                        pushes=[push("127.0.0.1:5000/fab/app:2.0", only_fabrikam, pushed_at="2024-06-04T10:00:00Z")])
    assert client.post("/v1/reports", json=body(report), headers=admin).status_code == 201
    contoso = new_key(client, "contoso", "read")
    hidden = client.get(f"/v1/images/{only_fabrikam}/trail", headers=contoso).json()
    assert hidden["pushes"] == [] and hidden["hidden_by_permissions"] is True
    assert "fabrikam" not in str(hidden) and "/fab/app" not in str(hidden)
    by_reference = client.get("/v1/trail", params={"reference": "127.0.0.1:5000/fab/app:2.0"}, headers=contoso).json()
    assert by_reference["pushes"] == [] and by_reference["hidden_by_permissions"] is True
    assert "fabrikam" not in str(by_reference)
    # Nothing anywhere, or nothing hidden: no such word.
    nowhere = client.get(f"/v1/images/{digest('nowhere')}/trail", headers=contoso).json()
    assert nowhere["pushes"] == [] and nowhere["hidden_by_permissions"] is False
    visible = client.get(f"/v1/images/{digest('newer')}/trail", headers=contoso).json()
    assert visible["pushes"] and visible["hidden_by_permissions"] is False
    fabrikam = client.get(f"/v1/images/{only_fabrikam}/trail", headers=admin).json()
    assert [p["run"]["id"] for p in fabrikam["pushes"]] == ["8"] and fabrikam["hidden_by_permissions"] is False


def test_search_says_when_permissions_hid_every_match(client, admin, stored):
    from imagetrail.auth import Principal
    from imagetrail.web.lookup import resolve

    only_fabrikam = digest("fabrikam-search")
    report = ado_report(org="fabrikam", org_id="00000000-1111-4222-8333-444444444444", run_id="9",
                        pushes=[push("127.0.0.1:5000/fab/tool:1.0", only_fabrikam, pushed_at="2024-06-05T10:00:00Z")])
    assert client.post("/v1/reports", json=body(report), headers=admin).status_code == 201
    contoso = Principal(kind="api-key", subject="t", scopes=frozenset({"read"}), organizations=frozenset({"contoso"}))
    everyone = Principal(kind="api-key", subject="t", scopes=frozenset({"read"}), organizations=None)
    prefix = only_fabrikam[:30]
    with client.app.state.sessions() as session:
        hidden = resolve(session, contoso, prefix)
        by_reference = resolve(session, contoso, "127.0.0.1:5000/fab/tool:1.0")
        nothing = resolve(session, contoso, digest("nobody")[:30])
        admin_view = resolve(session, everyone, prefix)
    assert hidden.candidates == [] and hidden.hidden_by_permissions and "hidden by your permissions" in hidden.message
    assert "fabrikam" not in hidden.message and "fab/tool" not in hidden.message
    assert by_reference.candidates == [] and by_reference.hidden_by_permissions
    assert nothing.candidates == [] and not nothing.hidden_by_permissions
    assert admin_view.redirect == f"/images/{only_fabrikam}" and not admin_view.hidden_by_permissions
