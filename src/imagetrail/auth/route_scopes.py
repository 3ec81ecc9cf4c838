"""The one table of what every route (API and web) requires, and the lookup that enforces it.

Every route the app serves has exactly one row here; ``tests/server/test_route_scopes.py``
walks the app's routes and fails on a route missing from this table. ``PUBLIC`` routes need no
credential. Routes never name a scope themselves: they depend on
``imagetrail.auth.dependencies.authorized`` (API) or the web session dependency, and
both call ``authorize``, which looks the matched route up here. A route without a row is
refused (fail closed).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from imagetrail.auth import SCOPE_ADMIN, SCOPE_INGEST, SCOPE_READ, SCOPE_REGISTRY, SCOPE_REMEDIATE

PUBLIC = "public"

# (method, path template) -> required scope. Keep sorted by path.
ROUTE_SCOPES: Dict[Tuple[str, str], str] = {
    # health
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    # API description; /docs only with IMAGETRAIL_API_DOCS=true
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    # API: write
    ("POST", "/v1/reports"): SCOPE_INGEST,
    ("POST", "/v1/clusters/{cluster}/inventory"): SCOPE_INGEST,
    ("POST", "/v1/clusters/{cluster}/changes"): SCOPE_INGEST,
    ("POST", "/v1/scans"): SCOPE_INGEST,
    ("POST", "/v1/image-relations"): SCOPE_INGEST,
    ("POST", "/v1/registry-events"): SCOPE_REGISTRY,
    # API: read
    ("GET", "/v1/images/{digest}/trail"): SCOPE_READ,
    ("GET", "/v1/trail"): SCOPE_READ,
    ("GET", "/v1/images"): SCOPE_READ,
    ("GET", "/v1/query"): SCOPE_READ,
    ("GET", "/v1/query/pipelines"): SCOPE_READ,
    ("GET", "/v1/coverage/gaps"): SCOPE_READ,
    ("GET", "/v1/coverage"): SCOPE_READ,
    ("GET", "/v1/coverage/untraced-pushes"): SCOPE_READ,
    # API: remediation
    ("POST", "/v1/remediations"): SCOPE_REMEDIATE,
    ("GET", "/v1/remediations/close-suggestions"): SCOPE_REMEDIATE,
    # Reads repositories with the remediation credentials: the same scope as remediation.
    ("POST", "/v1/owners/resolve"): SCOPE_REMEDIATE,
    # web
    ("GET", "/static/{name}"): PUBLIC,
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("POST", "/logout"): PUBLIC,
    ("POST", "/login/sso"): PUBLIC,  # starts single sign-on (sign-in CSRF token checked)
    ("GET", "/auth/callback"): PUBLIC,  # the provider's redirect back (state, nonce, PKCE checked)
    ("GET", "/"): SCOPE_READ,
    ("GET", "/search"): SCOPE_READ,
    ("GET", "/images/{digest}"): SCOPE_READ,
    ("GET", "/explorer"): SCOPE_READ,
    ("GET", "/explorer.csv"): SCOPE_READ,
    ("GET", "/explorer/pipelines"): SCOPE_READ,
    ("GET", "/remediations/new"): SCOPE_REMEDIATE,
    ("POST", "/remediations"): SCOPE_REMEDIATE,
    ("GET", "/coverage"): SCOPE_READ,
}

# What each scope lets a caller do, for 403 messages.
SCOPE_ACTIONS = {
    SCOPE_INGEST: "submit reports, inventories or scans",
    SCOPE_READ: "read",
    SCOPE_REMEDIATE: "plan or create work items",
    SCOPE_REGISTRY: "post registry notifications",
    SCOPE_ADMIN: "administer",
}


def route_key(method: str, route: Any) -> Tuple[str, Optional[str]]:
    """(method, path template) of a matched route; HEAD is answered like GET. The template is the
    route's own (its APIRouter's prefix included): routers are included without a prefix, which a
    test checks, so it is the URL template."""
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return ("GET" if method == "HEAD" else method, path)


def required_scope(method: str, route: Any) -> Optional[str]:
    """The scope the table demands for this route, PUBLIC, or None when the route has no row."""
    return ROUTE_SCOPES.get(route_key(method, route))


__all__ = ["PUBLIC", "ROUTE_SCOPES", "SCOPE_ACTIONS", "SCOPE_ADMIN", "SCOPE_INGEST", "SCOPE_READ", "SCOPE_REGISTRY",
           "SCOPE_REMEDIATE", "required_scope", "route_key"]
