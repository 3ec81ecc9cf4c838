"""Remediation in the right tracker: GitHub issues for GitHub-built images, Azure DevOps work items for
Azure DevOps runs, never one system's image in the other's tracker.

Both trackers are local stand-ins that check every request against the documented API
(tests/support/github_api.py, tests/support/azure_devops.py); the app is the real one.
"""

from __future__ import annotations

import dataclasses

import pytest

from imagetrail import report as r
from imagetrail.client.owners import owner_rows
from imagetrail.ingest import cloud as store
from imagetrail.ingest.reports import ingest_report
from imagetrail.parsers.scans import parse_report
from imagetrail.store.db import transaction
from imagetrail.store.models.cloud import RemediationItem
from imagetrail.views.remediation import ResolveAnswer
from tests.cloud import scenario
from tests.cloud.support import digest, ingester, pipeline_report, push
from tests.support.azure_devops import AzureDevOpsServer
from tests.support.github_api import GitHubApi

TOKEN = "ghp_test0123456789abcdef"
PAT = "test-pat-0123456789"
APP = digest(21)  # octo/shop's image, built by a GitHub workflow
ADO = digest(22)  # contoso/shop's image, built by an Azure DevOps pipeline


def github_report(
    owner: str,
    repository: str,
    run_id: str,
    pushes,
    actor: str = "octocat",
    server_url: str = "https://github.com",
    commit: str = "b" * 40,
) -> dict:
    context = r.PipelineContext(
        system=r.SYSTEM_GITHUB,
        server_url=server_url,
        organization=r.Named(id="9919", name=owner),
        project=r.Named(id="4242", name=repository),
        pipeline=r.Named(id=".github/workflows/build.yml", name="build"),
        run=r.Run(id=run_id, number="17", attempt=1, url=f"{server_url}/{repository}/actions/runs/{run_id}"),
        job=r.Job(id="build", name="build"),
        repository=r.Repository(
            id="4242",
            name=repository,
            uri=f"{server_url}/{repository}",
            type="GitHub",
            branch="refs/heads/main",
            commit=commit,
        ),
        requester=r.Person(id=None, name=actor, email=None),
    )
    return r.Report(context=context, pushes=list(pushes), generated_at="2024-05-01T10:00:00Z").to_dict()


@pytest.fixture
def github(api):
    with GitHubApi(TOKEN) as server:
        server.repo("octo/shop").collaborators.add("octocat")
        api.app.state.settings = dataclasses.replace(
            api.app.state.settings, github_api_url=server.url + "/", github_token=TOKEN
        )
        yield server


@pytest.fixture
def devops(api):
    with AzureDevOpsServer("octo", PAT) as server:
        api.app.state.settings = dataclasses.replace(
            api.app.state.settings, azure_devops_pat=PAT, azure_devops_server_urls=[server.url]
        )
        yield server


def ado_report(devops, **context) -> dict:
    """octo/shop run 55, an Azure DevOps run of the organisation the stand-in serves, pushing ADO."""
    image = push("registry.example.com/octo/shop:1", ADO)
    return pipeline_report("octo", "shop", "55", [image], server_url=devops.url + "/", **context)


def load(api, *reports):
    sessions = api.app.state.sessions
    for body in reports:
        ingest_report(sessions, body, ingester())
    for image in (APP, ADO):
        with transaction(sessions) as session:
            name = f"{image[-4:]}.json"
            store.ingest_scan(
                session, parse_report(scenario.trivy_report(scenario.ALPINE, image), name), name
            )


def remediate(api, **body):
    response = api.client.post("/v1/remediations", json={"filters": {"running": False}, **body})
    assert response.status_code == 200, response.text
    return {o["digest"]: o for o in response.json()["outcomes"]}


def test_a_github_built_image_gets_an_issue_in_its_repository_never_an_azure_devops_work_item(
    api, github, devops
):
    # An Azure DevOps organisation with the GitHub owner's name exists and is trusted: it must get nothing.
    load(
        api,
        github_report("octo", "octo/shop", "9001", [push("ghcr.io/octo/shop:1", APP)]),
        ado_report(devops),
    )
    plan = remediate(api, dry_run=True)
    app, ado = plan[APP], plan[ADO]
    assert (app["status"], app["tracker"], app["project"]) == ("would-create", "github", "octo/shop")
    assert app["target"] == "https://github.com/octo/shop/issues"
    assert (app["assigned_to"], app["owner_source"]) == ("octocat", "requester")
    assert app["labels"] == ["imagetrail", "critical"]
    assert "<!-- imagetrail:remediation digest=" + APP in app["body"] and "CVE-2021-36159" in app["body"]
    assert (ado["tracker"], ado["target"]) == ("azure-devops", f"{devops.url}/shop/_workitems")
    assert github.requests == [] and devops.requests == []  # a dry run calls nothing

    done = remediate(api)
    assert (
        done[APP]["status"] == "created"
        and done[APP]["work_item_url"] == "https://github.com/octo/shop/issues/1"
    )
    assert done[ADO]["status"] == "created"
    (issue,) = github.created
    assert issue["labels"] == ["imagetrail", "critical"] and issue["assignees"] == ["octocat"]
    assert issue["title"].startswith("[ImageTrail] 1 critical+ vulnerabilities in octo/shop@sha256:")
    assert [item["project"] for item in devops.created] == ["shop"]
    assert "ghcr.io" not in str(devops.created)  # the GitHub image never reached Azure DevOps
    assert github.errors == [] and devops.errors == []
    with api.app.state.sessions() as session:
        trackers = sorted((i.tracker, i.project) for i in session.query(RemediationItem))
    assert trackers == [("azure-devops", "shop"), ("github", "octo/shop")]


def test_an_issue_is_never_filed_twice_found_by_its_marker_when_the_record_is_gone(api, github):
    load(api, github_report("octo", "octo/shop", "9001", [push("ghcr.io/octo/shop:1", APP)]))
    assert remediate(api)[APP]["status"] == "created"
    again = remediate(api)[APP]
    assert again["status"] == "exists" and again["work_item_id"] == 1
    with api.app.state.sessions() as session, session.begin():
        session.query(RemediationItem).delete()  # say, another ImageTrail instance filed it
    found = remediate(api)[APP]
    assert found["status"] == "exists" and "repository has an issue" in found["reason"]
    assert len(github.created) == 1
    assert any(
        req.startswith("GET /repos/octo/shop/issues?labels=imagetrail&state=all") for req in github.requests
    )
    assert github.errors == []


def test_the_token_goes_only_to_the_configured_api_for_runs_of_the_configured_server(api, github):
    load(
        api,
        github_report(
            "octo",
            "octo/shop",
            "9001",
            [push("ghcr.io/octo/shop:1", APP)],
            server_url="https://github.evil.example",
        ),
        github_report("octo", "victim/repo", "9002", [push("ghcr.io/octo/other:1", ADO)]),
    )
    outcomes = remediate(api)
    assert outcomes[APP]["status"] == "skipped"
    assert outcomes[APP]["reason"].startswith("not remediable: GitHub server not trusted")
    assert "github.evil.example" in outcomes[APP]["reason"]
    # A run of owner octo naming another owner's repository is not filed there.
    assert outcomes[ADO]["status"] == "skipped"
    assert github.requests == []


def test_bots_are_never_assigned_and_a_refusing_github_is_a_failed_outcome_without_the_token(api, github):
    load(
        api,
        github_report(
            "octo", "octo/shop", "9001", [push("ghcr.io/octo/shop:1", APP)], actor="github-actions[bot]"
        ),
    )
    plan = remediate(api, dry_run=True)[APP]
    assert plan["assigned_to"] is None and "No owner is known." in plan["body"]
    github.fail_with = 403
    failed = remediate(api)[APP]
    assert failed["status"] == "failed" and "403" in failed["reason"] and TOKEN not in failed["reason"]
    assert github.created == []


def test_without_a_github_token_a_github_image_fails_with_what_to_set(api, github, devops):
    api.app.state.settings = dataclasses.replace(api.app.state.settings, github_token="")
    load(api, github_report("octo", "octo/shop", "9001", [push("ghcr.io/octo/shop:1", APP)]))
    outcome = remediate(api)[APP]
    assert outcome["status"] == "failed" and "IMAGETRAIL_GITHUB_TOKEN" in outcome["reason"]
    assert github.requests == [] and devops.requests == []


def test_a_newer_push_of_the_same_pipeline_without_the_cve_suggests_closing_the_issue(api, github):
    fixed, still = digest(23), digest(24)
    load(api, github_report("octo", "octo/shop", "9001", [push("ghcr.io/octo/shop:1", APP)]))
    assert remediate(api)[APP]["status"] == "created"
    suggestions = api.client.get("/v1/remediations/close-suggestions")
    assert suggestions.status_code == 200 and suggestions.json() == []
    # A newer push that still has the CVE suggests nothing; a later one scanned clean suggests closing.
    sessions = api.app.state.sessions
    for run_id, image, at, clean in (
        ("9002", still, "2024-05-02T10:00:00Z", False),
        ("9003", fixed, "2024-05-03T10:00:00Z", True),
    ):
        body = github_report("octo", "octo/shop", run_id, [push(f"ghcr.io/octo/shop:{run_id}", image, at)])
        ingest_report(sessions, body, ingester())
        data = scenario.trivy_report(scenario.ALPINE, image, drop_vulnerabilities=clean)
        with transaction(sessions) as session:
            store.ingest_scan(session, parse_report(data, f"{run_id}.json"), f"{run_id}.json")
    (suggestion,) = api.client.get("/v1/remediations/close-suggestions").json()
    assert (suggestion["tracker"], suggestion["project"], suggestion["item_id"]) == ("github", "octo/shop", 1)
    assert (suggestion["digest"], suggestion["newer_digest"]) == (APP, fixed)
    assert suggestion["cve_ids"] == ["CVE-2021-36159"] and "without CVE-2021-36159" in suggestion["reason"]


CODEOWNERS = b"""# platform owns everything unless a later rule says otherwise
*                 @octo/platform
/services/api/    @octo/api-team alice@octo.example
"""


def test_owners_come_in_order_with_their_sources_and_the_first_user_is_assigned(api, github):
    repo = github.repo("octo/shop")
    commit = "c" * 40
    repo.files[(commit, ".github/CODEOWNERS")] = CODEOWNERS
    repo.commits[commit] = {"name": "Bob Builder", "email": "bob@octo.example", "login": "bob"}
    repo.collaborators.add("bob")
    api.app.state.settings = dataclasses.replace(
        api.app.state.settings,
        owner_teams={"octo/octo/shop/build": ["shop"]},
        team_contacts={"shop": ["shop-oncall@octo.example"]},
    )
    image = push("ghcr.io/octo/shop:1", APP)
    image.labels = {"dev.imagetrail.dockerfile": "services/api/Dockerfile"}
    load(api, github_report("octo", "octo/shop", "9001", [image], commit=commit))

    # Before resolving: the requester alone.
    (row,) = api.client.get("/v1/query", params={"running": "false"}).json()["rows"][:1]
    assert [(o["source"], o["name"]) for o in row["trail"]["owners"]] == [("requester", "octocat")]

    resolved = api.client.post("/v1/owners/resolve", json={"filters": {"running": False}})
    assert resolved.status_code == 200, resolved.text
    (run,) = resolved.json()["runs"]
    assert run["problems"] == []
    got = [(o["source"], o["login"] or o["email"]) for o in run["owners"]]
    assert got == [
        ("codeowners", "@octo/api-team"),
        ("codeowners", "alice@octo.example"),
        ("commit-author", "bob"),
        ("team-mapping", "shop-oncall@octo.example"),
        ("requester", "octocat"),
    ]
    assert run["owners"][0]["detail"] == (
        ".github/CODEOWNERS line 3: /services/api/ (matching services/api/Dockerfile)"
    )
    assert {o["evidence"] for o in run["owners"]} == {"claimed"}  # an API key only claims the commit
    # The CLI's table (imagetrail owners resolve), read through the answer's model: ranked, with contacts.
    rows = owner_rows(ResolveAnswer.model_validate(resolved.json()))
    assert [(r["rank"], r["owner"], r["contact"], r["source"]) for r in rows] == [
        (1, "@octo/api-team", "@octo/api-team", "codeowners"),
        (2, "alice@octo.example", "alice@octo.example", "codeowners"),
        (3, "Bob Builder", "bob@octo.example", "commit-author"),
        (4, "shop", "shop-oncall@octo.example", "team-mapping"),
        (5, "octocat", "octocat", "requester"),
    ]
    assert {r["run"] for r in rows} == {"9001"} and {r["where"] for r in rows} == {"octo/octo/shop"}
    assert (
        f"GET /repos/octo/shop/contents/.github%2FCODEOWNERS?ref={commit}" in github.requests
        or f"GET /repos/octo/shop/contents/.github/CODEOWNERS?ref={commit}" in github.requests
    )
    assert f"GET /repos/octo/shop/commits/{commit}" in github.requests and github.errors == []

    # The trail, the explorer, its CSV and the issue show the owners and their sources.
    (row,) = api.client.get("/v1/query", params={"running": "false"}).json()["rows"][:1]
    assert [o["source"] for o in row["trail"]["owners"]][:3] == ["codeowners", "codeowners", "commit-author"]
    (trail_push,) = api.client.get(f"/v1/images/{APP}/trail").json()["pushes"]
    assert [o["source"] for o in trail_push["owners"]] == [o["source"] for o in run["owners"]]
    from imagetrail.web.session import WebSession, web_reader

    api.app.dependency_overrides[web_reader] = lambda: WebSession(api.principal, "csrf", via_cookie=False)
    header, line = api.client.get("/explorer.csv", params={"running": "false"}).text.splitlines()[:2]
    assert (
        header.endswith(",running,owner_source,owners,pushed_at,scanned_at")
        and ",codeowners,'@octo/api-team (codeowners);" in line
    )  # '@: guarded
    page = api.client.get("/explorer", params={"running": "false"}).text
    assert 'class="hint owner-source"' in page and "codeowners +4" in page
    assert "from codeowners" in api.client.get(f"/images/{APP}").text  # the trail page's owner node
    plan = remediate(api, dry_run=True)[APP]
    # @octo/api-team is a team (GitHub cannot assign it): the first user in the list is.
    assert (plan["assigned_to"], plan["owner_source"]) == ("bob", "commit-author")
    assert (
        "Owners, in order: `@octo/api-team` (codeowners), `alice@octo.example` (codeowners), `Bob Builder` "
        "(commit-author)" in plan["body"]
    )


def test_service_identities_are_never_owners():
    from imagetrail.queries.owners import OwnerPolicy
    from imagetrail.views.trail import OwnerEntry

    policy = OwnerPolicy(OwnerPolicy().service_identities + ("svc-*@contoso.example",))
    names = [
        "Project Collection Build Service (contoso)",
        "shop Build Service (contoso)",
        "Microsoft.VisualStudio.Services.TFS",
        "github-actions[bot]",
        "dependabot[bot]",
        "github-actions",
        "svc-deploy@contoso.example",
    ]
    assert all(policy.is_service_identity(name) for name in names)
    assert not any(policy.is_service_identity(name) for name in ("octocat", "bot", "Alice Build", "robot"))
    kept = policy.keep([OwnerEntry(source="requester", name=n) for n in names + ["octocat", "OctoCat"]])
    assert [o.name for o in kept] == ["octocat"]  # and no repeats


def test_azure_repos_owners_come_from_the_repository_at_the_commit_and_assign_by_e_mail(api, devops):
    from imagetrail.ingest.registry_events import record_claims
    from imagetrail.parsers.attribution import from_provenance
    from imagetrail.store.models.registry import RegistryArtifact

    commit = "d" * 40
    devops.files[("shop", "shop-repo", commit, ".azuredevops/CODEOWNERS")] = (
        "* platform@octo.example\n/src/ carol@octo.example\n"
    )
    devops.commits[("shop", "shop-repo", commit)] = {
        "name": "Project Collection Build Service (octo)",
        "email": "build@octo.example",
    }
    load(api, ado_report(devops, commit=commit, requester_email="dave@octo.example"))

    def resolved():
        (run,) = api.client.post("/v1/owners/resolve", json={"filters": {"running": False}}).json()["runs"]
        return [(o["source"], o["email"]) for o in run["owners"]]

    # The commit's author is a build service: never an owner. Without a known Dockerfile path, the root's.
    assert resolved() == [("codeowners", "platform@octo.example"), ("requester", "dave@octo.example")]
    assert devops.errors == []
    assert any(
        "/_apis/git/repositories/shop-repo/items?path=%2F.azuredevops%2FCODEOWNERS" in r
        for r in devops.requests
    )
    plan = remediate(api, dry_run=True)[ADO]
    assert (plan["assigned_to"], plan["owner_source"]) == ("platform@octo.example", "codeowners")

    # BuildKit's provenance (recorded by the registry side) names the Dockerfile: src/ is carol's.
    statement = {
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "predicate": {
            "builder": {"id": ""},
            "invocation": {"configSource": {"entryPoint": "src/Dockerfile"}},
        },
    }
    artifact = RegistryArtifact(registry_host="registry.example.com", repository="octo/shop", digest=ADO)
    with transaction(api.app.state.sessions) as session:
        record_claims(session, artifact, [from_provenance(statement, f"attestation {digest(99)}")])
    assert resolved()[0] == ("codeowners", "carol@octo.example")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"filters": {"min_severity": "extreme"}}, "min_severity"),
        ({"max_runs": 0}, "max_runs"),
        ({"max_runs": 1001}, "max_runs"),
        ({"owners": ["me"]}, "owners"),
        ({"filters": {"digests": "sha256:x"}}, "digests"),
    ],
)
def test_bad_owner_requests_are_refused_naming_the_field(api, body, field):
    response = api.client.post("/v1/owners/resolve", json=body)
    assert response.status_code == 422 and field in response.text, response.text


def test_an_assignee_the_organisation_does_not_know_leaves_the_work_item_unassigned(api, devops):
    devops.identities = {"someone@octo.example"}
    load(api, ado_report(devops, requester_email="stranger@elsewhere.example"))
    outcome = remediate(api)[ADO]
    assert outcome["status"] == "created" and outcome["assigned_to"] is None
    assert outcome["reason"].startswith("created unassigned: stranger@elsewhere.example was refused")
    (item,) = devops.created
    assert "System.AssignedTo" not in item["fields"]
