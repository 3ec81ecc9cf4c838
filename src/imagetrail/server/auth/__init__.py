"""Who is calling: the principal behind a request, and what it may do.

Contract used by every route: depend on ``require_ingest`` or ``require_reader``
(see ``imagetrail.server.auth.dependencies``) and filter by
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


@dataclass(frozen=True)
class Principal:
    kind: str  # api-key | azure-devops | github | entra
    subject: str
    scopes: FrozenSet[str]
    # Organisation names this principal may act on; None means every organisation (admin keys).
    organizations: Optional[FrozenSet[str]]
    claims: Mapping[str, Any] = field(default_factory=dict)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes or SCOPE_ADMIN in self.scopes

    def may_access(self, organization: Optional[str]) -> bool:
        if self.organizations is None:
            return True
        return organization is not None and organization.lower() in self.organizations
