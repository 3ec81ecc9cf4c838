"""Least privilege, declared once: every route has a row in ROUTE_SCOPES, every protected route
enforces it through the one guard, and an authorization matrix of every route x credential.

The matrix runs the real app with real credentials: API keys from the database, Azure DevOps,
GitHub and Entra tokens signed by the local OIDC issuer (tests/support/oidc_provider.py).
"""

from __future__ import annotations

import re
from typing import Dict, FrozenSet, Iterator, List, Tuple

import pytest
from fastapi.routing import APIRoute

from imagetrail.auth import SCOPE_ADMIN, SCOPE_INGEST, SCOPE_READ, SCOPE_REGISTRY, SCOPE_REMEDIATE
from imagetrail.auth.dependencies import authorized
from imagetrail.auth.route_scopes import PUBLIC, ROUTE_SCOPES
from imagetrail.web.session import web_reader
from tests.server.conftest import new_key
from tests.server.reports import digest
from tests.server.test_auth import (
    ado_token,
    bearer,
    entra_token,
    gh_token,
    trusted,  # noqa: F401  (fixture: the app trusting the local issuer)
)
from tests.web.sign_in import csrf_token

GUARDS = (authorized, web_reader)
ALL = frozenset({SCOPE_INGEST, SCOPE_READ, SCOPE_REMEDIATE, SCOPE_REGISTRY, SCOPE_ADMIN})


@pytest.fixture
def database_url(sqlite_url):
    """Authorization does not depend on the database engine."""
    return sqlite_url


def _routes(router) -> Iterator[object]:
    """Every route, descending into included routers (FastAPI 0.165 keeps them as _IncludedRouter)."""
    for route in router.routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            # The matched route the guard sees does not know an include_router(prefix=...): put the
            # prefix on the APIRouter instead, so the table's templates are the URLs' templates.
            assert not route.include_context.prefix, f"{inner} is included with a prefix"
            yield from _routes(inner)
        else:
            yield route


def app_routes(app) -> List[Tuple[str, str, object]]:
    found = []
    for route in _routes(app.router):
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                found.append((method, route.path, route))
    return found


def _depends_on(dependant, targets) -> bool:
    return any(d.call in targets or _depends_on(d, targets) for d in dependant.dependencies)


def test_every_route_has_a_row_and_protected_routes_use_the_guard(client):
    routes = app_routes(client.app)
    # Sanity: the walk sees the included routers, and no row names a route the app lacks (the
    # interactive docs are the only optional routes: IMAGETRAIL_API_DOCS, off by default).
    optional = {("GET", "/docs"), ("GET", "/docs/oauth2-redirect")}
    stale = set(ROUTE_SCOPES) - {(m, p) for m, p, _ in routes} - optional
    assert not stale, f"rows in auth/route_scopes.py for routes the app does not serve: {sorted(stale)}"
    missing = [(m, p) for m, p, _ in routes if (m, p) not in ROUTE_SCOPES]
    assert not missing, f"routes without a row in auth/route_scopes.py: {missing}"
    unguarded = [(m, p) for m, p, r in routes if ROUTE_SCOPES[(m, p)] != PUBLIC
                 and not (isinstance(r, APIRoute) and _depends_on(r.dependant, GUARDS))]
    assert not unguarded, f"protected routes that do not depend on the ROUTE_SCOPES guard: {unguarded}"


def test_the_issue_s_privileges_are_what_the_table_says():
    # issue 9 "Why" 2 and 3: planning or creating work items is its own scope, on the API and the web
    for key in (("POST", "/v1/remediations"), ("GET", "/remediations/new"), ("POST", "/remediations")):
        assert ROUTE_SCOPES[key] == SCOPE_REMEDIATE
    assert ROUTE_SCOPES[("POST", "/v1/reports")] == SCOPE_INGEST


def test_a_route_without_a_row_is_refused(client, admin):
    from fastapi import Depends

    @client.app.get("/undeclared-route-for-test")
    def undeclared(principal=Depends(authorized)):  # pragma: no cover - must not run
        return {"ran": True}

    response = client.get("/undeclared-route-for-test", headers=admin)
    assert response.status_code == 403
    assert "ROUTE_SCOPES" in response.json()["detail"]


# -- the matrix ---------------------------------------------------------------------------

SAMPLE_DIGEST = digest("matrix")
PATH_VALUES = {"digest": SAMPLE_DIGEST, "cluster": "matrix-cluster", "name": "style.css"}
QUERIES = {"/v1/trail": {"reference": "127.0.0.1:5000/web/app:1.0"}, "/v1/images": {"run": "345"},
           "/remediations/new": {"row": SAMPLE_DIGEST}}
BODIES = {"/v1/remediations": {"dry_run": True}, "/v1/image-relations": {"relations": []}}
WEB_PREFIXES = ("/", "/search", "/images/", "/explorer", "/remediations", "/coverage", "/login", "/logout",
                "/static/")


def _is_web(path: str) -> bool:
    return not path.startswith("/v1/") and path not in ("/healthz", "/readyz", "/openapi.json", "/docs",
                                                         "/docs/oauth2-redirect", "/redoc")


# credential name -> the scopes it holds (what the issue grants each kind; nothing else)
CREDENTIAL_SCOPES: Dict[str, FrozenSet[str]] = {
    "read A": frozenset({SCOPE_READ}),
    "read *": frozenset({SCOPE_READ}),
    "ingest A": frozenset({SCOPE_INGEST}),
    "ingest *": frozenset({SCOPE_INGEST}),
    "remediate A": frozenset({SCOPE_REMEDIATE, SCOPE_READ}),
    "admin": ALL,
    "azure-devops job token": frozenset({SCOPE_INGEST}),
    "github job token": frozenset({SCOPE_INGEST}),
    "entra app": frozenset({SCOPE_READ, SCOPE_INGEST}),
}


@pytest.fixture
def matrix(trusted):
    client, local_issuer = trusted
    credentials = {
        "read A": new_key(client, "contoso", "read"),
        "read *": new_key(client, "*", "read"),
        "ingest A": new_key(client, "contoso", "ingest"),
        "ingest *": new_key(client, "*", "ingest"),
        "remediate A": new_key(client, "contoso", "remediate"),
        "admin": new_key(client, "*", "admin"),
        "azure-devops job token": bearer(ado_token(local_issuer)),
        "github job token": bearer(gh_token(local_issuer)),
        "entra app": bearer(entra_token(local_issuer, roles=("ImageTrail.Read", "ImageTrail.Ingest"))),
    }
    return client, credentials


def _request(client, method: str, path: str, headers: Dict[str, str]):
    url = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)
    params = QUERIES.get(path, {})
    if method == "GET":
        return client.get(url, params=params, headers=headers, follow_redirects=False)
    if _is_web(path):
        return client.post(url, data={"row": SAMPLE_DIGEST}, headers=headers, follow_redirects=False)
    return client.post(url, json=BODIES.get(path, {}), params=params, headers=headers, follow_redirects=False)


def _scope_refusal(response) -> bool:
    """The guard's 403 (other 403s, e.g. "needs a credential of all organisations", are not it)."""
    return response.status_code == 403 and re.search(r"it needs the \w+ scope", response.text) is not None


def test_authorization_matrix(matrix):
    client, credentials = matrix
    failures = []
    checked = 0
    for method, path, _ in app_routes(client.app):
        scope = ROUTE_SCOPES[(method, path)]
        web = _is_web(path)
        cases = [("no credential", {}), ("garbage", {"Authorization": "Bearer garbage"}),
                 *credentials.items()]
        for name, headers in cases:
            response = _request(client, method, path, headers)
            checked += 1
            status = response.status_code
            if status >= 500:
                failures.append(f"{method} {path} as {name}: {status} {response.text[:200]}")
                continue
            if scope == PUBLIC:
                ok = status not in (401, 403) or path in ("/login", "/logout")
            elif name == "no credential":
                ok = status == (303 if web else 401)
            elif name == "garbage":
                ok = status == 401
            elif scope in CREDENTIAL_SCOPES[name]:
                ok = status != 401 and not _scope_refusal(response)
            else:
                ok = _scope_refusal(response) and f"needs the {scope} scope" in response.json()["detail"]
            if not ok:
                failures.append(f"{method} {path} as {name}: {status} {response.text[:200]}")
    assert checked >= 11 * 20
    assert not failures, "\n".join(failures)


def test_every_job_token_has_the_ingest_scope_and_nothing_else(matrix):
    client, credentials = matrix
    for name in ("azure-devops job token", "github job token"):
        plan = client.post("/v1/remediations", json={"dry_run": True}, headers=credentials[name])
        assert plan.status_code == 403 and "remediate scope" in plan.json()["detail"], plan.text
        assert client.get("/v1/images", params={"run": "1"}, headers=credentials[name]).status_code == 403


def test_a_read_key_signed_in_on_the_web_cannot_plan_or_create_work_items(matrix):
    """issue 9 "Why" 3: the web enforced only 'reader' on POST /remediations."""
    client, credentials = matrix
    key = credentials["read A"]["Authorization"].split()[1]
    form = client.get("/login", params={"next": "/"})
    signed_in = client.post("/login", data={"api_key": key, "next": "/", "csrf_token": csrf_token(form.text)},
                            follow_redirects=False)
    assert signed_in.status_code == 303
    assert client.get("/explorer").status_code == 200  # the session works for reading
    plan = client.get("/remediations/new", params={"row": SAMPLE_DIGEST})
    assert plan.status_code == 403 and "remediate scope" in plan.text
    create = client.post("/remediations", data={"row": SAMPLE_DIGEST, "csrf_token": "x"})
    assert create.status_code == 403 and "remediate scope" in create.text


# -- the documented table ---------------------------------------------------------------------

DOC = __import__("pathlib").Path(__file__).resolve().parents[2] / "docs" / "backend.md"
BEGIN, END = "<!-- scope-table: generated from ROUTE_SCOPES -->", "<!-- /scope-table -->"


def scope_table() -> str:
    order = [PUBLIC, SCOPE_INGEST, SCOPE_READ, SCOPE_REMEDIATE, SCOPE_REGISTRY, SCOPE_ADMIN]
    lines = ["| required scope | routes |", "|---|---|"]
    for scope in sorted(set(ROUTE_SCOPES.values()), key=order.index):
        routes = ", ".join(f"`{m} {p}`" for (m, p), s in ROUTE_SCOPES.items() if s == scope)
        lines.append(f"| `{scope}` | {routes} |")
    return "\n".join(lines)


def test_docs_scope_table_is_route_scopes():
    text = DOC.read_text()
    documented = text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip()
    assert documented == scope_table(), (
        "docs/backend.md's scope table is stale; paste the output of: python -c \"from "
        "tests.server.test_route_scopes import scope_table; print(scope_table())\" between its markers")
