"""Job identity tokens (Azure DevOps, GitHub), Entra ID tokens and API keys, against a local issuer."""

from __future__ import annotations

import time

import pytest

from tests.server.conftest import new_key
from tests.server.reports import ADO_ORG_ID, ADO_PROJECT_ID, ado_report, body, github_report
from tests.support.oidc_provider import new_key as new_rsa_key

TENANT = "9b1c2d3e-0000-4000-8000-00000000aaaa"
OTHER_ORG_ID = "00000000-1111-4222-8333-444444444444"


@pytest.fixture
def database_url(sqlite_url):
    """Authentication does not depend on the database engine: SQLite only (ingest tests cover both)."""
    return sqlite_url


@pytest.fixture
def trusted(make_client, local_issuer):
    client = make_client(
        azure_devops_org_ids=[ADO_ORG_ID], azure_devops_issuer_base=local_issuer.base + "/ado",
        github_owners=["octo-org"], github_issuer=local_issuer.base + "/github", token_audience="api://imagetrail",
        entra_tenant_ids=[TENANT], entra_audience="api://imagetrail-backend",
        entra_authority_base=local_issuer.base + "/entra", entra_organizations=["contoso"],
    )
    return client, local_issuer


def ado_token(issuer, *, org_id=ADO_ORG_ID, run_id="345", def_id="12", sub="p://contoso/Web/web-ci", **kw):
    claims = {"sub": sub, "org_id": org_id, "prj_id": ADO_PROJECT_ID, "def_id": def_id, "run_id": run_id,
              "rpo_ver": "a" * 40, "rpo_ref": "refs/heads/main"}
    return issuer.token(f"{issuer.base}/ado/{org_id}", kw.pop("aud", "api://AzureADTokenExchange"), claims, **kw)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_azure_devops_job_token_ingests_its_own_report(trusted):
    client, issuer = trusted
    response = client.post("/v1/reports", json=body(ado_report()), headers=bearer(ado_token(issuer)))
    assert response.status_code == 201, response.text
    assert client.post("/v1/reports", json=body(ado_report(job="Test")),
                       headers=bearer(ado_token(issuer))).status_code == 201
    # discovery and JWKS fetched once, then cached
    assert sum(p.endswith("openid-configuration") for p in issuer.requests) == 1
    assert sum(p.endswith("/keys") for p in issuer.requests) == 1


@pytest.mark.parametrize("report, field", [
    (ado_report(run_id="999"), "context.run.id"),
    (ado_report(pipeline_id="77"), "context.pipeline.id"),
    (ado_report(project="Other", project_id="11111111-2222-4333-8444-555555555555"), "context.project"),
    (ado_report(org="fabrikam", org_id=OTHER_ORG_ID), "context.organization"),
    (github_report(), "context.system"),
])
def test_a_report_for_another_run_is_forbidden(trusted, report, field):
    client, issuer = trusted
    token = ado_token(issuer)
    response = client.post("/v1/reports", json=body(report), headers=bearer(token))
    assert response.status_code == 403
    assert field in response.json()["detail"]
    assert token not in response.text


@pytest.mark.parametrize("make, expected", [
    (lambda i: ado_token(i, lifetime=-3600), "expired"),
    (lambda i: ado_token(i, aud="api://someone-else"), "audience"),
    (lambda i: ado_token(i, org_id=OTHER_ORG_ID), "not trusted"),
    (lambda i: ado_token(i, key=new_rsa_key("forger")), "signature"),
    (lambda i: ado_token(i, key=new_rsa_key("forger"), kid="unknown-kid"), "not signed by a key"),
    (lambda i: ado_token(i, now=time.time() + 3600), "not valid"),
    (lambda i: "eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.", "not trusted"),
    (lambda i: "garbage", "neither an ImageTrail API key nor a JWT"),
])
def test_bad_tokens_are_401_without_echoing_them(trusted, make, expected):
    client, issuer = trusted
    token = make(issuer)
    response = client.post("/v1/reports", json=body(ado_report()), headers=bearer(token))
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert expected in response.json()["detail"]
    assert token not in response.text


def test_service_connection_tokens_are_not_job_tokens(trusted):
    client, issuer = trusted
    response = client.post("/v1/reports", json=body(ado_report()),
                           headers=bearer(ado_token(issuer, sub="sc://contoso/Web/azure-prod")))
    assert response.status_code == 403
    assert "p://" in response.json()["detail"]


def test_missing_credentials_are_401(client):
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "}):
        response = client.post("/v1/reports", json=body(ado_report()), headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_nothing_is_trusted_until_configured(client, local_issuer):
    token = ado_token(local_issuer)
    response = client.post("/v1/reports", json=body(ado_report()), headers=bearer(token))
    assert response.status_code == 401
    assert "IMAGETRAIL_TRUST_AZURE_DEVOPS_ORGS" in response.json()["detail"]


def test_an_unreachable_issuer_is_503(trusted):
    client, issuer = trusted
    issuer.down = True
    response = client.post("/v1/reports", json=body(ado_report()), headers=bearer(ado_token(issuer)))
    assert response.status_code == 503
    assert response.headers["Retry-After"]


def gh_token(issuer, *, owner="octo-org", repo="octo-org/app", run_id="9001", attempt="1", **kw):
    claims = {"sub": f"repo:{repo}:ref:refs/heads/main", "repository": repo, "repository_owner": owner,
              "repository_id": "123456", "run_id": run_id, "run_attempt": attempt, "sha": "b" * 40,
              "workflow_ref": f"{repo}/.github/workflows/ci.yml@refs/heads/main", "actor": "octocat"}
    return issuer.token(f"{issuer.base}/github", kw.pop("aud", "api://imagetrail"), claims, **kw)


def test_github_token_ingests_its_own_report(trusted):
    client, issuer = trusted
    response = client.post("/v1/reports", json=body(github_report()), headers=bearer(gh_token(issuer)))
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("token_kw, report_kw, status, field", [
    ({"run_id": "1"}, {}, 403, "context.run.id"),
    ({"attempt": "2"}, {}, 403, "context.run.attempt"),
    ({}, {"repo": "octo-org/other", "repo_id": None}, 403, "context.project.name"),
    ({"owner": "evil-org", "repo": "evil-org/app"}, {}, 403, "IMAGETRAIL_TRUST_GITHUB_OWNERS"),
    ({"aud": "https://github.com/octo-org"}, {}, 401, "audience"),
])
def test_github_mismatches_are_refused(trusted, token_kw, report_kw, status, field):
    client, issuer = trusted
    response = client.post("/v1/reports", json=body(github_report(**report_kw)),
                           headers=bearer(gh_token(issuer, **token_kw)))
    assert response.status_code == status, response.text
    assert field in response.json()["detail"]


def entra_token(issuer, *, roles=("ImageTrail.Read",), tenant=TENANT, oid="0b0b0b0b-0000-4000-8000-000000000001"):
    return issuer.token(f"{issuer.base}/entra/{tenant}/v2.0", "api://imagetrail-backend",
                        {"tid": tenant, "oid": oid, "azp": "client-app", "roles": list(roles), "sub": oid})


def test_entra_reader_reads_only_granted_organisations(trusted):
    client, issuer = trusted
    admin = new_key(client, "*", "admin")
    assert client.post("/v1/reports", json=body(ado_report()), headers=admin).status_code == 201
    assert client.post("/v1/reports", json=body(ado_report(org="fabrikam", org_id=OTHER_ORG_ID)),
                       headers=admin).status_code == 201
    reader = bearer(entra_token(issuer))
    rows = client.get("/v1/images", params={"pipeline": "12"}, headers=reader)
    assert rows.status_code == 200
    assert {row["organization"] for row in rows.json()} == {"contoso"}
    assert client.post("/v1/reports", json=body(ado_report(job="x")), headers=reader).status_code == 403


def test_entra_ingest_role_writes_granted_organisation_only(trusted):
    client, issuer = trusted
    writer = bearer(entra_token(issuer, roles=("ImageTrail.Ingest",)))
    assert client.post("/v1/reports", json=body(ado_report()), headers=writer).status_code == 201
    other = client.post("/v1/reports", json=body(ado_report(org="fabrikam", org_id=OTHER_ORG_ID)), headers=writer)
    assert other.status_code == 403
    assert "fabrikam" in other.json()["detail"]


def test_entra_token_without_roles_or_from_untrusted_tenant(trusted):
    client, issuer = trusted
    no_roles = client.get("/v1/images", params={"run": "1"}, headers=bearer(entra_token(issuer, roles=())))
    assert no_roles.status_code == 403
    other_tenant = client.get("/v1/images", params={"run": "1"},
                              headers=bearer(entra_token(issuer, tenant="ffffffff-0000-4000-8000-000000000000")))
    assert other_tenant.status_code == 401


def test_ingest_key_cannot_write_another_organisation(client):
    contoso = new_key(client, "contoso", "ingest")
    assert client.post("/v1/reports", json=body(ado_report()), headers=contoso).status_code == 201
    other = client.post("/v1/reports", json=body(ado_report(org="fabrikam", org_id=OTHER_ORG_ID)), headers=contoso)
    assert other.status_code == 403
    assert client.get("/v1/images", params={"run": "345"}, headers=contoso).status_code == 403


def test_read_key_sees_only_its_organisation_and_cannot_ingest(client, admin):
    for org, org_id in (("contoso", ADO_ORG_ID), ("fabrikam", OTHER_ORG_ID)):
        assert client.post("/v1/reports", json=body(ado_report(org=org, org_id=org_id)),
                           headers=admin).status_code == 201
    reader = new_key(client, "fabrikam", "read")
    rows = client.get("/v1/images", params={"run": "345"}, headers=reader).json()
    assert [row["organization"] for row in rows] == ["fabrikam"]
    assert client.post("/v1/reports", json=body(ado_report(job="T")), headers=reader).status_code == 403


def test_revoked_and_tampered_keys_are_401(make_client):
    from imagetrail.auth.api_keys import revoke_key
    from imagetrail.store.db import transaction

    client = make_client(api_key_cache_seconds=0)  # revocation visible at once
    headers = new_key(client, "contoso", "read")
    key = headers["Authorization"].split()[1]
    tampered = {"Authorization": "Bearer " + key[:-2] + ("AA" if not key.endswith("AA") else "BB")}
    assert client.get("/v1/images", params={"run": "1"}, headers=tampered).status_code == 401
    assert client.get("/v1/images", params={"run": "1"}, headers=headers).status_code == 200
    with transaction(client.app.state.sessions) as session:
        assert revoke_key(session, key.split("_")[1])
    response = client.get("/v1/images", params={"run": "1"}, headers=headers)
    assert response.status_code == 401
    assert key not in response.text


def test_a_revoked_key_stops_working_once_its_cache_entry_expires(make_client):
    from imagetrail.auth.api_keys import revoke_key
    from imagetrail.store.db import transaction

    client = make_client(api_key_cache_seconds=3)
    headers = new_key(client, "contoso", "read")
    assert client.get("/v1/images", params={"run": "1"}, headers=headers).status_code == 200
    with transaction(client.app.state.sessions) as session:
        assert revoke_key(session, headers["Authorization"].split("_")[1])
    # Within the cache lifetime the verified key is still served from memory...
    assert client.get("/v1/images", params={"run": "1"}, headers=headers).status_code == 200
    time.sleep(3.1)
    # ...and then the revocation holds.
    assert client.get("/v1/images", params={"run": "1"}, headers=headers).status_code == 401
