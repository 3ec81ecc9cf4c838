"""Verifying OIDC tokens from CI jobs (Azure DevOps, GitHub Actions) and Microsoft Entra ID.

The issuer is read from the (unverified) token only to pick one of the configured trusted
issuers; everything else (signature with the issuer's published JWKS, issuer, audience,
expiry) is then verified by PyJWT. Nothing is trusted until configured in settings.

Claim names (documented in docs/backend.md):
- Azure DevOps job tokens (System.OidcRequestUri, "Oidctoken - Create" REST API): ``iss``
  ``https://vstoken.dev.azure.com/{org_id}``, ``sub`` ``p://{organisation}/{project}/{pipeline}``,
  ``org_id`` (System.CollectionId), ``prj_id`` (System.TeamProjectId), ``def_id``
  (System.DefinitionId), ``run_id`` (Build.BuildId), ``rpo_id``, ``rpo_uri``, ``rpo_ver``, ``rpo_ref``.
- GitHub Actions: ``repository``, ``repository_owner``, ``repository_id``, ``run_id``,
  ``run_attempt``, ``workflow_ref``, ``sha``, ``actor``...
- Entra ID v2 access tokens: ``tid``, ``oid``, ``azp`` / ``appid``, ``roles``, ``scp``.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, Mapping, Optional, Tuple

import jwt
from jwt import PyJWKClient

from imagetrail.server.auth import SCOPE_ADMIN, SCOPE_INGEST, SCOPE_READ, Principal
from imagetrail.server.auth.errors import forbidden, unauthorized, unavailable
from imagetrail.server.settings import Settings

KIND_AZURE_DEVOPS = "azure-devops"
KIND_GITHUB = "github"
KIND_ENTRA = "entra"
# Reconcile's principals (server/reconcile): same claim names, built by the backend from the CI
# system's own answer about the run a kept report was found with.
KIND_AZURE_DEVOPS_API = "azure-devops-api"
KIND_GITHUB_API = "github-api"

ALGORITHMS = ["RS256"]
FETCH_TIMEOUT_SECONDS = 10.0
# Entra app roles (roles claim) or delegated scopes (scp claim) -> ImageTrail scopes.
ENTRA_SCOPES = {
    "imagetrail.ingest": SCOPE_INGEST, "ingest": SCOPE_INGEST,
    "imagetrail.read": SCOPE_READ, "read": SCOPE_READ,
    "imagetrail.admin": SCOPE_ADMIN, "admin": SCOPE_ADMIN,
}


class IssuerUnreachable(Exception):
    """The issuer's discovery document or keys could not be fetched."""


@dataclass(frozen=True)
class TrustedIssuer:
    kind: str
    issuer: str
    audience: str


class _IssuerKeys:
    """Discovery document -> jwks_uri -> PyJWKClient, cached for ``lifespan`` seconds."""

    def __init__(self, issuer: str, lifespan: int):
        self.issuer = issuer
        self.lifespan = lifespan
        self._client: Optional[PyJWKClient] = None
        self._fetched_at = 0.0
        self._lock = threading.Lock()

    def _discover(self) -> PyJWKClient:
        url = self.issuer + "/.well-known/openid-configuration"
        try:
            with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_SECONDS) as response:
                document = json.load(response)
        except (OSError, ValueError) as exc:
            raise IssuerUnreachable(f"cannot read the OIDC discovery document of {self.issuer} "
                                    f"({type(exc).__name__})") from None
        if not isinstance(document, dict) or document.get("issuer") != self.issuer or not document.get("jwks_uri"):
            raise IssuerUnreachable(f"the discovery document of {self.issuer} does not name this issuer "
                                    "and a jwks_uri")
        return PyJWKClient(document["jwks_uri"], cache_keys=True, lifespan=self.lifespan,
                           timeout=int(FETCH_TIMEOUT_SECONDS))

    def signing_key(self, token: str) -> Any:
        with self._lock:
            if self._client is None or time.monotonic() - self._fetched_at > self.lifespan:
                self._client = self._discover()
                self._fetched_at = time.monotonic()
            client = self._client
        try:
            return client.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError:
            raise IssuerUnreachable(f"cannot fetch the signing keys of {self.issuer}") from None


class TokenVerifier:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._keys: Dict[str, _IssuerKeys] = {}
        self._lock = threading.Lock()

    # -- which issuer -----------------------------------------------------------------
    def trusted_issuer(self, issuer: str) -> Optional[TrustedIssuer]:
        s = self.settings
        ado_prefix = s.azure_devops_issuer_base + "/"
        if issuer.startswith(ado_prefix) and issuer[len(ado_prefix):].lower() in s.azure_devops_org_ids:
            return TrustedIssuer(KIND_AZURE_DEVOPS, issuer, s.azure_devops_audience)
        if s.github_owners and issuer == s.github_issuer:
            return TrustedIssuer(KIND_GITHUB, issuer, s.token_audience)
        entra_prefix = s.entra_authority_base + "/"
        if s.entra_audience and issuer.startswith(entra_prefix) and issuer.endswith("/v2.0"):
            tenant = issuer[len(entra_prefix):-len("/v2.0")].lower()
            if tenant in s.entra_tenant_ids:
                return TrustedIssuer(KIND_ENTRA, issuer, s.entra_audience)
        return None

    def _issuer_keys(self, issuer: str) -> _IssuerKeys:
        with self._lock:
            keys = self._keys.get(issuer)
            if keys is None:
                keys = self._keys[issuer] = _IssuerKeys(issuer, self.settings.jwks_cache_seconds)
            return keys

    # -- verification -----------------------------------------------------------------
    def verify(self, token: str) -> Principal:
        """The principal behind a job or Entra token; raises an HTTPException (401/403/503) otherwise."""
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise unauthorized("the bearer credential is neither an ImageTrail API key nor a JWT") from None
        issuer = unverified.get("iss")
        trusted = self.trusted_issuer(issuer) if isinstance(issuer, str) else None
        if trusted is None:
            shown = issuer[:200] if isinstance(issuer, str) else "(none)"
            raise unauthorized(f"tokens from issuer {shown!r} are not trusted; configure "
                               "IMAGETRAIL_TRUST_AZURE_DEVOPS_ORGS, IMAGETRAIL_TRUST_GITHUB_OWNERS or "
                               "IMAGETRAIL_TRUST_ENTRA_TENANTS")
        claims = self._verified_claims(token, trusted)
        if trusted.kind == KIND_AZURE_DEVOPS:
            return _azure_devops_principal(claims)
        if trusted.kind == KIND_GITHUB:
            return _github_principal(claims, self.settings)
        return _entra_principal(claims, self.settings)

    def _verified_claims(self, token: str, trusted: TrustedIssuer) -> Dict[str, Any]:
        try:
            key = self._issuer_keys(trusted.issuer).signing_key(token)
        except IssuerUnreachable as exc:
            raise unavailable(f"{exc}; try again later", self.settings.retry_after_seconds) from None
        except jwt.PyJWKClientError:
            raise unauthorized(f"the token is not signed by a key that {trusted.issuer} publishes") from None
        except jwt.InvalidTokenError:
            raise unauthorized("the token header is malformed") from None
        try:
            return jwt.decode(
                token, key, algorithms=ALGORITHMS, audience=trusted.audience, issuer=trusted.issuer,
                leeway=self.settings.token_leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("the token has expired; request a new one from the job") from None
        except jwt.InvalidAudienceError:
            raise unauthorized(f"the token's audience is not {trusted.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise unauthorized(f"the token's issuer is not {trusted.issuer!r}") from None
        except jwt.InvalidSignatureError:
            raise unauthorized("the token's signature does not verify") from None
        except jwt.InvalidTokenError as exc:
            # PyJWT's messages name the failed check (missing claim, not yet valid...), never the token.
            raise unauthorized(f"the token is not valid: {exc}") from None


def _azure_devops_principal(claims: Mapping[str, Any]) -> Principal:
    subject = str(claims.get("sub") or "")
    organization, project, pipeline = parse_pipeline_subject(subject)
    if organization is None:
        raise forbidden("the Azure DevOps token is not a pipeline job token (its sub claim must look like "
                        "p://organisation/project/pipeline); request it without a service connection")
    organizations = {organization.lower()}
    if claims.get("org_id"):
        organizations.add(str(claims["org_id"]).lower())
    return Principal(kind=KIND_AZURE_DEVOPS, subject=subject, scopes=frozenset({SCOPE_INGEST}),
                     organizations=frozenset(organizations), claims=dict(claims))


def parse_pipeline_subject(subject: str) -> Tuple[Optional[str], Optional[str], Optional[str]]:
    """``p://org/project/pipeline`` -> (org, project, pipeline); Nones when it is not that form.
    The pipeline name may itself contain '/' (folders), so only the first two separators split."""
    if not subject.startswith("p://"):
        return None, None, None
    parts = subject[len("p://"):].split("/", 2)
    if len(parts) != 3 or not all(parts):
        return None, None, None
    return parts[0], parts[1], parts[2]


def _github_principal(claims: Mapping[str, Any], settings: Settings) -> Principal:
    owner = str(claims.get("repository_owner") or "").lower()
    if not owner or owner not in settings.github_owners:
        raise forbidden(f"GitHub workflows of {owner or '(no repository_owner claim)'!r} are not trusted; "
                        "add the owner to IMAGETRAIL_TRUST_GITHUB_OWNERS")
    return Principal(kind=KIND_GITHUB, subject=str(claims.get("sub") or owner), scopes=frozenset({SCOPE_INGEST}),
                     organizations=frozenset({owner}), claims=dict(claims))


def _entra_principal(claims: Mapping[str, Any], settings: Settings) -> Principal:
    granted = [str(r) for r in claims.get("roles") or []] + str(claims.get("scp") or "").split()
    scopes: FrozenSet[str] = frozenset(ENTRA_SCOPES[g.lower()] for g in granted if g.lower() in ENTRA_SCOPES)
    if not scopes:
        raise forbidden("the Entra token carries no ImageTrail role or scope (ImageTrail.Ingest, "
                        "ImageTrail.Read or ImageTrail.Admin)")
    ids = [str(claims[c]).lower() for c in ("oid", "azp", "appid") if claims.get(c)]
    organizations = settings.entra_organizations
    for identity in ids:
        if identity in settings.entra_grants:
            organizations = settings.entra_grants[identity]
            break
    if not organizations:
        raise forbidden("no organisation is granted to this Entra principal; set IMAGETRAIL_ENTRA_ORGS "
                        "or IMAGETRAIL_ENTRA_GRANTS")
    allowed = None if "*" in organizations else frozenset(organizations)
    return Principal(kind=KIND_ENTRA, subject=ids[0] if ids else str(claims.get("sub") or "entra"),
                     scopes=scopes, organizations=allowed, claims=dict(claims))
