"""Who is calling: the principal behind a request, and what it may do.

Contract used by every route: depend on ``authorized`` (``imagetrail.auth.dependencies``),
which enforces the route's row in ``route_scopes.ROUTE_SCOPES``, and filter rows by
``principal.may_access(organization)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, FrozenSet, Mapping, Optional

SCOPE_INGEST = "ingest"
SCOPE_READ = "read"
SCOPE_REMEDIATE = "remediate"  # plan and create work items
SCOPE_REGISTRY = "registry"  # post registry push/pull notifications
SCOPE_ADMIN = "admin"

# A scope also grants these: admin everything; remediate reads what it plans from (a remediation
# plan shows the same digests, CVEs and owners a reader sees). Nothing else implies anything.
IMPLIED_SCOPES: Mapping[str, FrozenSet[str]] = {
    SCOPE_ADMIN: frozenset({SCOPE_INGEST, SCOPE_READ, SCOPE_REMEDIATE, SCOPE_REGISTRY}),
    SCOPE_REMEDIATE: frozenset({SCOPE_READ}),
}


@dataclass(frozen=True)
class Principal:
    kind: str  # api-key | azure-devops | github | entra | azure-devops-api (see report_claims)
    subject: str
    scopes: FrozenSet[str]
    # Organisation names this principal may act on; None means every organisation (admin keys).
    organizations: Optional[FrozenSet[str]]
    claims: Mapping[str, Any] = field(default_factory=dict)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes or any(scope in IMPLIED_SCOPES.get(held, ()) for held in self.scopes)

    def may_access(self, organization: Optional[str]) -> bool:
        if self.organizations is None:
            return True
        return organization is not None and organization.lower() in self.organizations
