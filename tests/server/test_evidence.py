"""Evidence for every fact of a trail (issue 9, "A map you can trust", point 1 of its "Why").

Reproduces the attacks against the real app (SQLite and PostgreSQL) with real credentials: API
keys from the database, job tokens signed by the local OIDC issuer (tests/support/oidc_provider.py).
"""

from __future__ import annotations

from typing import Any, Dict

import pytest
from pydantic import ValidationError

from imagetrail.auth import SCOPE_INGEST, Principal
from imagetrail.auth.report_claims import assess
from imagetrail.facts import CLAIMED, VERIFIED
from imagetrail.report import Person
from imagetrail.views.trace import FactEvidence
from tests.server.conftest import new_key
from tests.server.reports import ADO_ORG_ID, ADO_PROJECT_ID, ado_report, body, digest, github_report
from tests.server.test_auth import trusted  # noqa: F401  (fixture: the app trusting the local issuer)
from tests.support.migrations import downgrade

GENUINE_URI = "https://dev.azure.com/contoso/Web/_git/web"
EVIL_URI = "https://evil.example/evil.git"
VICTIM = Person("v1", "Victim", "victim@example.com")


def job_token(issuer, run_id: str = "6000", **claims: Any) -> Dict[str, str]:
    """An Azure DevOps job token with the repository claims the job's checkout has."""
    payload = {"sub": "p://contoso/Web/web-ci", "org_id": ADO_ORG_ID, "prj_id": ADO_PROJECT_ID, "def_id": "12",
               "run_id": run_id, "rpo_uri": GENUINE_URI, "rpo_ver": "a" * 40, "rpo_ref": "refs/heads/main",
               **claims}
    token = issuer.token(f"{issuer.base}/ado/{ADO_ORG_ID}", "api://AzureADTokenExchange", payload)
    return {"Authorization": f"Bearer {token}"}


def forged(run_id: str = "6000", job: str = "Forged") -> Dict[str, Any]:
    report = body(ado_report(run_id=run_id, job=job, commit="e" * 40, requester=VICTIM))
    report["context"]["repository"]["uri"] = EVIL_URI
    return report


def trail(client, headers, image: str) -> Dict[str, Any]:
    response = client.get(f"/v1/images/{image}/trail", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def levels(push: Dict[str, Any]) -> Dict[str, str]:
    return {fact: known["evidence"] for fact, known in push["facts"].items()}


def test_a_forged_first_report_cannot_hide_the_job_s_own_facts(trusted):
    """Why 1: an ingest key posted run 6000 first, with a forged commit, repository and requester."""
    client, issuer = trusted
    key = new_key(client, "contoso", "ingest")
    key_id = key["Authorization"].split("_")[1]
    assert client.post("/v1/reports", json=forged(), headers=key).status_code == 201
    genuine = body(ado_report(run_id="6000"))
    assert client.post("/v1/reports", json=genuine, headers=job_token(issuer)).status_code == 201

    admin = new_key(client, "*", "admin")
    push = trail(client, admin, digest("6000Build"))["pushes"][0]
    assert push["source"]["commit"] == "a" * 40 and push["source"]["uri"] == GENUINE_URI
    assert levels(push) == {"organization": VERIFIED, "project": VERIFIED, "pipeline": VERIFIED, "run": VERIFIED,
                            "repository": VERIFIED, "branch": VERIFIED, "commit": VERIFIED, "requester": "disputed"}
    # The requester is in no claim of the token: both values are shown, with who sent each.
    competing = {(s["value"], s["credential_kind"], s["credential_id"]) for s in push["facts"]["requester"]["competing"]}
    assert competing == {("victim@example.com", "api-key", f"key:{key_id}"),
                         ("ann@contoso.example", "azure-devops", "p://contoso/Web/web-ci")}
    assert push["requester"]["email"] == "ann@contoso.example"  # the run's own job said so

    # The forged report's own push is only claimed, whatever run it names.
    fake = trail(client, admin, digest("6000Forged"))["pushes"][0]
    assert {levels(fake)[f] for f in ("organization", "project", "pipeline", "run")} == {CLAIMED}


def test_the_job_s_facts_stay_verified_when_a_claim_comes_later(trusted):
    client, issuer = trusted
    assert client.post("/v1/reports", json=body(ado_report(run_id="6000")), headers=job_token(issuer)).status_code == 201
    assert client.post("/v1/reports", json=forged(), headers=new_key(client, "contoso", "ingest")).status_code == 201
    push = trail(client, new_key(client, "*", "read"), digest("6000Build"))["pushes"][0]
    assert push["source"]["commit"] == "a" * 40 and push["source"]["uri"] == GENUINE_URI
    assert levels(push)["commit"] == levels(push)["repository"] == VERIFIED
    assert levels(push)["requester"] == "disputed"


@pytest.mark.parametrize("claim, value, field", [
    ("rpo_ver", "b" * 40, "context.repository.commit"),
    ("rpo_uri", "https://dev.azure.com/contoso/Web/_git/other", "context.repository.uri"),
    ("rpo_ref", "refs/heads/release", "context.repository.branch"),
])
def test_a_job_token_report_contradicting_its_own_claims_is_refused(trusted, claim, value, field):
    client, issuer = trusted
    response = client.post("/v1/reports", json=body(ado_report(run_id="6000")),
                           headers=job_token(issuer, **{claim: value}))
    assert response.status_code == 403, response.text
    assert field in response.json()["detail"] and value in response.json()["detail"]
    assert client.get(f"/v1/images/{digest('6000Build')}/trail",
                      headers=new_key(client, "*", "read")).json()["pushes"] == []


def test_a_claim_the_report_lacks_is_taken_from_the_token(trusted):
    client, issuer = trusted
    report = ado_report(run_id="6000")
    report.context.repository.commit = None
    assert client.post("/v1/reports", json=body(report), headers=job_token(issuer)).status_code == 201
    push = trail(client, new_key(client, "*", "read"), digest("6000Build"))["pushes"][0]
    assert push["source"]["commit"] == "a" * 40 and levels(push)["commit"] == VERIFIED


def test_claims_never_silently_overwrite_claims(client):
    first, second = new_key(client, "contoso", "ingest"), new_key(client, "*", "ingest")
    assert client.post("/v1/reports", json=body(ado_report(run_id="7000")), headers=first).status_code == 201
    other = body(ado_report(run_id="7000", job="Test", commit="c" * 40))
    assert client.post("/v1/reports", json=other, headers=second).status_code == 201
    push = trail(client, new_key(client, "*", "read"), digest("7000Build"))["pushes"][0]
    assert levels(push)["commit"] == "disputed" and levels(push)["repository"] == CLAIMED
    assert sorted(s["value"] for s in push["facts"]["commit"]["competing"]) == ["a" * 40, "c" * 40]
    assert push["source"]["commit"] == "a" * 40  # the first stated, marked disputed: not replaced


def test_a_page_keeps_each_push_s_own_competing_values(client):
    """The trace shares one frozen evidence entry per level among undisputed facts: a disputed fact's values
    stay on its own push, and a shared entry cannot be changed in place."""
    first, second = new_key(client, "contoso", "ingest"), new_key(client, "*", "ingest")
    assert client.post("/v1/reports", json=body(ado_report(run_id="7100")), headers=first).status_code == 201
    disputed = body(ado_report(run_id="7100", job="Test", commit="c" * 40))
    assert client.post("/v1/reports", json=disputed, headers=second).status_code == 201
    assert client.post("/v1/reports", json=body(ado_report(run_id="7101")), headers=first).status_code == 201
    page = client.get("/v1/trail", params={"reference": "127.0.0.1:5000/web/app:1.0"},
                      headers=new_key(client, "*", "read")).json()
    by_run = {}
    for push in page["pushes"]:
        by_run.setdefault(push["run"]["id"], []).append(push)
    assert sorted(by_run) == ["7100", "7101"]
    for push in by_run["7100"]:
        assert levels(push)["commit"] == "disputed"
        assert sorted(s["value"] for s in push["facts"]["commit"]["competing"]) == ["a" * 40, "c" * 40]
    (other,) = by_run["7101"]
    assert levels(other)["commit"] == CLAIMED
    assert all(known["competing"] == [] for known in other["facts"].values())
    shared = FactEvidence(evidence=CLAIMED)
    with pytest.raises(ValidationError):
        shared.evidence = VERIFIED


def github_token(issuer, run_id: str = "9001") -> Dict[str, str]:
    """GitHub's claim set for a push to main of octo-org/app (GitHub Docs, OpenID Connect reference)."""
    claims = {"sub": "repo:octo-org/app:ref:refs/heads/main", "repository": "octo-org/app",
              "repository_owner": "octo-org", "repository_id": "123456", "run_id": run_id, "run_attempt": "1",
              "sha": "b" * 40, "ref": "refs/heads/main", "actor": "octocat", "actor_id": "7",
              "workflow_ref": "octo-org/app/.github/workflows/ci.yml@refs/heads/main"}
    token = issuer.token(f"{issuer.base}/github", "api://imagetrail", claims)
    return {"Authorization": f"Bearer {token}"}


def test_github_token_binds_workflow_repository_commit_branch_and_actor(trusted):
    client, issuer = trusted
    assert client.post("/v1/reports", json=body(github_report()), headers=github_token(issuer)).status_code == 201
    push = trail(client, new_key(client, "*", "read"), digest("9001"))["pushes"][0]
    assert set(levels(push).values()) == {VERIFIED}, levels(push)
    lying = body(github_report(run_id="9002"))
    lying["context"]["repository"]["commit"] = "f" * 40
    refused = client.post("/v1/reports", json=lying, headers=github_token(issuer, run_id="9002"))
    assert refused.status_code == 403 and "context.repository.commit" in refused.json()["detail"]
    # A re-run's requester (GITHUB_TRIGGERING_ACTOR) may differ from the token's actor: kept, as claimed.
    rerun = body(github_report(run_id="9003"))
    rerun["context"]["requester"] = {"id": None, "name": "hubot", "email": None}
    assert client.post("/v1/reports", json=rerun, headers=github_token(issuer, run_id="9003")).status_code == 201
    push = trail(client, new_key(client, "*", "read"), digest("9003"))["pushes"][0]
    assert levels(push)["requester"] == CLAIMED and levels(push)["commit"] == VERIFIED


def test_a_ci_api_principal_verifies_with_the_job_token_s_claim_names():
    """The contract for reconciled reports: Principal(kind="azure-devops-api") built from Builds - Get."""
    report = body(ado_report(run_id="6000"))
    claims = {"org_id": ADO_ORG_ID, "prj_id": ADO_PROJECT_ID, "def_id": "12", "run_id": "6000",
              "rpo_uri": GENUINE_URI, "rpo_ver": "a" * 40, "rpo_ref": "refs/heads/main"}
    principal = Principal(kind="azure-devops-api", subject="https://dev.azure.com/contoso/builds/6000",
                          scopes=frozenset({SCOPE_INGEST}), organizations=frozenset({"contoso"}), claims=claims)
    found = assess(principal, report)
    assert found.conflict is None
    assert {f: found.evidence[f] for f in ("run", "repository", "commit", "branch")} == dict.fromkeys(
        ("run", "repository", "commit", "branch"), VERIFIED)
    assert found.evidence["requester"] == CLAIMED
    assert "context.repository.commit" in assess(
        Principal(**{**principal.__dict__, "claims": {**claims, "rpo_ver": "b" * 40}}), report).conflict


# -- same reportId, different content -------------------------------------------------------

def test_same_report_id_with_different_content_is_409_naming_what_differs(client):
    key = new_key(client, "contoso", "ingest")
    original = body(ado_report(run_id="8000"))
    assert client.post("/v1/reports", json=original, headers=key).status_code == 201
    resent = dict(original, generatedAt="2030-01-01T00:00:00Z", warnings=["retried"])
    again = client.post("/v1/reports", json=resent, headers=key)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    changed = body(ado_report(run_id="8000", requester=VICTIM))
    assert changed["reportId"] == original["reportId"]
    response = client.post("/v1/reports", json=changed, headers=key)
    assert response.status_code == 409, response.text
    assert "context.requester.email" in response.json()["detail"]
    push = trail(client, new_key(client, "*", "read"), digest("8000Build"))["pushes"][0]
    assert push["requester"]["email"] == "ann@contoso.example"


def test_a_claimed_report_cannot_take_the_job_s_report_id(trusted):
    """Pre-empting the genuine reportId with forged content must not keep the job's report out."""
    client, issuer = trusted
    fake = forged(job="Build")
    genuine = body(ado_report(run_id="6000"))
    assert fake["reportId"] == genuine["reportId"]
    assert client.post("/v1/reports", json=fake, headers=new_key(client, "contoso", "ingest")).status_code == 201
    assert client.post("/v1/reports", json=genuine, headers=job_token(issuer)).status_code == 201
    pushes = trail(client, new_key(client, "*", "read"), digest("6000Build"))["pushes"]
    assert len(pushes) == 1 and pushes[0]["evidence"]["identity_kind"] == "azure-devops"
    assert levels(pushes[0])["run"] == levels(pushes[0])["commit"] == VERIFIED


def test_a_copied_report_sent_first_does_not_leave_the_job_s_report_claimed(trusted):
    client, issuer = trusted
    genuine = body(ado_report(run_id="6000"))
    assert client.post("/v1/reports", json=genuine, headers=new_key(client, "contoso", "ingest")).status_code == 201
    assert client.post("/v1/reports", json=genuine, headers=job_token(issuer)).status_code == 201
    (push,) = trail(client, new_key(client, "*", "read"), digest("6000Build"))["pushes"]
    assert push["evidence"]["identity_kind"] == "azure-devops" and levels(push)["run"] == VERIFIED
    again = client.post("/v1/reports", json=genuine, headers=new_key(client, "contoso", "ingest"))
    assert again.status_code == 200 and again.json()["status"] == "duplicate"


def test_facts_stored_before_evidence_become_claimed_statements(database_url):
    """Migration 0003: a run's existing commit and requester are kept as 'legacy' claims, so a later
    report disputes them instead of silently replacing them."""
    import sqlalchemy as sa

    from imagetrail.store.db import make_engine
    from imagetrail.store.migrate import upgrade

    engine = make_engine(database_url)
    upgrade(engine, "0002")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO organizations (id, system, name) VALUES (1, 'azure-devops', 'contoso')"))
        conn.execute(sa.text("INSERT INTO projects (id, organization_id, name) VALUES (1, 1, 'Web')"))
        conn.execute(sa.text("INSERT INTO pipelines (id, project_id, external_id) VALUES (1, 1, '12')"))
        conn.execute(sa.text("INSERT INTO people (id, organization_id, key) VALUES (1, 1, 'old@contoso.example')"))
        conn.execute(sa.text('INSERT INTO runs (id, pipeline_id, external_id, attempt, "commit", requester_id) '
                             "VALUES (1, 1, '345', 1, :commit, 1)"), {"commit": "d" * 40})
    upgrade(engine)
    with engine.connect() as conn:
        run = conn.execute(sa.text("SELECT commit_evidence, requester_evidence, branch_evidence FROM runs")).one()
        statements = conn.execute(sa.text(
            "SELECT fact, value, ref_id, evidence, credential_kind FROM fact_statements ORDER BY fact")).all()
    engine.dispose()
    assert tuple(run) == (CLAIMED, CLAIMED, None)
    assert [tuple(s) for s in statements] == [("commit", "d" * 40, None, CLAIMED, "legacy"),
                                              ("requester", "old@contoso.example", 1, CLAIMED, "legacy")]


# -- evidence wherever the trail is shown ----------------------------------------------------

def test_the_web_trail_page_shows_a_badge_per_fact_and_the_competing_values(trusted):
    client, issuer = trusted
    assert client.post("/v1/reports", json=forged(), headers=new_key(client, "contoso", "ingest")).status_code == 201
    assert client.post("/v1/reports", json=body(ado_report(run_id="6000")), headers=job_token(issuer)).status_code == 201
    page = client.get(f"/images/{digest('6000Build')}", headers=new_key(client, "*", "read"))
    assert page.status_code == 200, page.text
    html = page.text
    for fact in ("run", "repository", "branch", "commit"):
        assert f'ev-verified" data-fact="{fact}"' in html
    assert 'ev-disputed" data-fact="requester"' in html
    competing = html[html.index('class="competing" data-fact="requester"'):].replace("<wbr>", "")
    assert "victim@example.com" in competing and "api-key key:" in competing and "azure-devops p://" in competing


def test_imagetrail_trace_prints_and_returns_the_evidence(database_url):
    import json
    import os
    import subprocess
    import sys

    import requests

    from tests.server.test_serve_e2e import create_key
    from tests.support.live_server import running_server

    with running_server(database_url) as url:
        first, second = create_key(database_url, "contoso", "ingest"), create_key(database_url, "*", "ingest")
        for key, report in ((first, ado_report(run_id="7000")), (second, ado_report(run_id="7000", job="Test",
                                                                                      commit="c" * 40))):
            assert requests.post(url + "/v1/reports", json=body(report),
                                 headers={"Authorization": f"Bearer {key}"}).status_code == 201
        env = {**os.environ, "IMAGETRAIL_URL": url, "IMAGETRAIL_API_KEY": create_key(database_url, "*", "read")}

        def trace(*args):
            return subprocess.run([sys.executable, "-m", "imagetrail", "trace", digest("7000Build"), *args],
                                  capture_output=True, text=True, timeout=60, env=env)

        human = trace()
        assert human.returncode == 0, human.stderr
        assert f"web [claimed] refs/heads/main [claimed] {'a' * 40} [disputed]" in human.stdout
        assert "Ann Owner <ann@contoso.example> [claimed]" in human.stdout
        assert "facts      disputed: commit; claimed: organization, project" in human.stdout
        assert f"commit {'c' * 40} (claimed, sent by api-key key:" in human.stdout
        as_json = json.loads(trace("--json").stdout)
        facts = as_json["pushes"][0]["facts"]
        assert facts["commit"]["evidence"] == "disputed" and facts["run"]["evidence"] == CLAIMED
        assert len(facts["commit"]["competing"]) == 2


def test_a_later_claimed_push_does_not_take_a_running_image_from_its_verified_run(trusted):
    """The explorer and remediation follow one push per image: a claim made later must not win."""
    from imagetrail.queries.trail import find_trails
    from tests.server.reports import push

    client, issuer = trusted
    image = digest("6000Build")
    assert client.post("/v1/reports", json=body(ado_report(run_id="6000")), headers=job_token(issuer)).status_code == 201
    later = body(ado_report(run_id="6001", requester=VICTIM,
                            pushes=[push("127.0.0.1:5000/web/app:1.0", image, pushed_at="2099-01-01T00:00:00Z")]))
    assert client.post("/v1/reports", json=later, headers=new_key(client, "contoso", "ingest")).status_code == 201
    with client.app.state.sessions() as session:
        chosen = find_trails(session, [image])[image]
    assert (chosen.run_id, chosen.owner_email, chosen.evidence["run"]) == ("6000", "ann@contoso.example", VERIFIED)


def test_in_one_batch_the_job_s_report_wins_over_a_claim_of_the_same_report_id(client):
    """Group commit: a forged report arriving in the same batch as the job's own is the one refused."""
    from imagetrail.ingest.reports import IngestResult, ReportConflict, store_reports

    claims = {"sub": "p://contoso/Web/web-ci", "org_id": ADO_ORG_ID, "prj_id": ADO_PROJECT_ID, "def_id": "12",
              "run_id": "6000", "rpo_uri": GENUINE_URI, "rpo_ver": "a" * 40, "rpo_ref": "refs/heads/main"}
    job = Principal(kind="azure-devops", subject=claims["sub"], scopes=frozenset({SCOPE_INGEST}),
                    organizations=frozenset({"contoso", ADO_ORG_ID}), claims=claims)
    key = Principal(kind="api-key", subject="key:forger", scopes=frozenset({SCOPE_INGEST}),
                    organizations=frozenset({"contoso"}))
    fake, genuine = forged(job="Build"), body(ado_report(run_id="6000"))
    outcomes = store_reports(client.app.state.sessions, [(fake, key), (genuine, job)])
    assert isinstance(outcomes[0], ReportConflict) and "context.repository" in str(outcomes[0])
    assert isinstance(outcomes[1], IngestResult) and outcomes[1].created
    (push,) = trail(client, new_key(client, "*", "read"), digest("6000Build"))["pushes"]
    assert push["evidence"]["identity_kind"] == "azure-devops" and levels(push)["commit"] == VERIFIED


def test_the_evidence_migration_downgrades_and_upgrades_again(database_url):
    import sqlalchemy as sa

    from imagetrail.store.db import make_engine
    from imagetrail.store.migrate import upgrade

    engine = make_engine(database_url)
    upgrade(engine)
    downgrade(engine, "0002")
    with engine.connect() as connection:
        inspector = sa.inspect(connection)
        assert "fact_statements" not in inspector.get_table_names()
        assert "commit_evidence" not in {c["name"] for c in inspector.get_columns("runs")}
        assert "evidence" not in {c["name"] for c in inspector.get_columns("reports")}
    upgrade(engine)
    with engine.connect() as connection:
        assert "fact_statements" in sa.inspect(connection).get_table_names()
    engine.dispose()
