"""The one table of what every route (API and web) requires.

Every route the app serves has exactly one row here; ``tests/server/test_route_scopes.py``
walks the app's routes and fails on a route missing from this table. ``PUBLIC`` routes need no
credential; ``SESSION`` web routes need a signed-in person (scope as given in the second column).
"""

from __future__ import annotations

from typing import Dict, Tuple

from imagetrail.server.auth import SCOPE_ADMIN, SCOPE_INGEST, SCOPE_READ, SCOPE_REGISTRY, SCOPE_REMEDIATE

PUBLIC = "public"

# (method, path template) -> required scope. Keep sorted by path.
ROUTE_SCOPES: Dict[Tuple[str, str], str] = {
    # health
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    # API: write
    ("POST", "/v1/reports"): SCOPE_INGEST,
    ("POST", "/v1/clusters/{cluster}/inventory"): SCOPE_INGEST,
    ("POST", "/v1/clusters/{cluster}/changes"): SCOPE_INGEST,
    ("POST", "/v1/scans"): SCOPE_INGEST,
    ("POST", "/v1/image-relations"): SCOPE_INGEST,
    # API: read
    ("GET", "/v1/images/{digest}/trail"): SCOPE_READ,
    ("GET", "/v1/trail"): SCOPE_READ,
    ("GET", "/v1/images"): SCOPE_READ,
    ("GET", "/v1/query"): SCOPE_READ,
    ("GET", "/v1/coverage/gaps"): SCOPE_READ,
    ("GET", "/v1/coverage"): SCOPE_READ,
    # API: remediation
    ("POST", "/v1/remediations"): SCOPE_REMEDIATE,
    # web
    ("GET", "/static/{name}"): PUBLIC,
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("POST", "/logout"): PUBLIC,
    ("GET", "/"): SCOPE_READ,
    ("GET", "/search"): SCOPE_READ,
    ("GET", "/images/{digest}"): SCOPE_READ,
    ("GET", "/explorer"): SCOPE_READ,
    ("GET", "/explorer.csv"): SCOPE_READ,
    ("GET", "/remediations/new"): SCOPE_REMEDIATE,
    ("POST", "/remediations"): SCOPE_REMEDIATE,
    ("GET", "/coverage"): SCOPE_READ,
}

__all__ = ["PUBLIC", "ROUTE_SCOPES", "SCOPE_ADMIN", "SCOPE_INGEST", "SCOPE_READ", "SCOPE_REGISTRY",
           "SCOPE_REMEDIATE"]
