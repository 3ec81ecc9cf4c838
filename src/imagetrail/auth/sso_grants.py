"""From a verified id_token to what the person may do: IMAGETRAIL_SSO_GRANTS.

A grant names a role or group value and the organisations and scopes it gives
(``value=org1|org2:read|remediate``). Entra ID: app roles (``roles`` claim) and group object
ids (``groups`` claim). Other providers: the claim named by IMAGETRAIL_SSO_GROUPS_CLAIM (a dotted
path such as ``realm_access.roles`` reaches into nested objects).

A principal carries one set of scopes over its organisations, so when a person's grants give
different scopes to different organisations, only the scopes every one of those organisations
has are kept (never more than any grant gave). ``admin`` includes the other scopes.
"""

from __future__ import annotations

from typing import Any, FrozenSet, List, Mapping, Optional, Set, Tuple

from imagetrail.auth import SCOPE_ADMIN, SCOPE_READ, Principal
from imagetrail.settings import SSO_SCOPES, Settings, SsoGrant

ENTRA_CLAIMS = ("roles", "groups")
MAX_VALUES = 1000  # a token listing more roles or groups than this is cut, not parsed whole
MAX_VALUE_LENGTH = 256
WILDCARD = "*"


class NoAccess(Exception):
    """The person signed in at the provider, but no grant gives them access to ImageTrail."""

    def __init__(self, name: str, values: List[str], groups_overage: bool = False):
        super().__init__(name)
        self.name = name
        self.values = values  # the role and group values seen, to help an administrator
        self.groups_overage = groups_overage  # Entra left groups out (too many): use app roles instead


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _values(claim: Any) -> List[str]:
    items = claim if isinstance(claim, list) else [claim] if isinstance(claim, str) else []
    return [str(v)[:MAX_VALUE_LENGTH] for v in items[:MAX_VALUES] if isinstance(v, (str, int))]


def role_values(claims: Mapping[str, Any], settings: Settings) -> List[str]:
    paths = ENTRA_CLAIMS if settings.sso_provider == "entra" else (settings.sso_groups_claim,)
    return [v for path in paths for v in _values(_claim(claims, path))]


def display_name(claims: Mapping[str, Any]) -> str:
    for name in ("name", "preferred_username", "email", "sub"):
        if isinstance(claims.get(name), str) and claims[name].strip():
            return claims[name].strip()[:255]
    return "unknown"


def _covers(grant: SsoGrant, organization: str, scope: str) -> bool:
    in_org = WILDCARD in grant.organizations or organization in grant.organizations
    return in_org and (scope in grant.scopes or SCOPE_ADMIN in grant.scopes)


def _common_scopes(grants: List[SsoGrant]) -> Tuple[Optional[FrozenSet[str]], Set[str]]:
    wildcard = [g for g in grants if WILDCARD in g.organizations]
    if wildcard:
        scopes = {s for g in wildcard for s in g.scopes}
        return None, scopes
    organizations = frozenset(o for g in grants for o in g.organizations)
    scopes = {s for s in SSO_SCOPES if all(any(_covers(g, o, s) for g in grants) for o in organizations)}
    return organizations, scopes


def principal_for(claims: Mapping[str, Any], settings: Settings) -> Principal:
    """The principal a verified id_token maps to; raises ``NoAccess`` when it maps to nothing readable."""
    values = role_values(claims, settings)
    matched = [g for g in settings.sso_grants if g.value in values]
    name = display_name(claims)
    organizations, scopes = _common_scopes(matched) if matched else (frozenset(), set())
    if not matched or not (SCOPE_READ in scopes or SCOPE_ADMIN in scopes):
        overage = settings.sso_provider == "entra" and "groups" in (_claim(claims, "_claim_names") or {})
        raise NoAccess(name, values[:50], overage)
    if SCOPE_ADMIN in scopes:
        scopes = {SCOPE_ADMIN}
    return Principal(kind="sso", subject=f"{settings.sso_provider}:{claims['sub']}"[:255], scopes=frozenset(scopes), organizations=organizations,
                     claims={"name": name})
