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

import asyncio
import concurrent.futures
import json
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Tuple

import jwt
from fastapi import HTTPException

from imagetrail.auth import SCOPE_ADMIN, SCOPE_INGEST, SCOPE_READ, SCOPE_REMEDIATE, Principal
from imagetrail.auth.errors import forbidden, unauthorized, unavailable
from imagetrail.settings import Settings

KIND_AZURE_DEVOPS = "azure-devops"
KIND_GITHUB = "github"
KIND_ENTRA = "entra"
# Reconcile's principals (server/reconcile): same claim names, built by the backend from the CI
# system's own answer about the run a kept report was found with.
KIND_AZURE_DEVOPS_API = "azure-devops-api"
KIND_GITHUB_API = "github-api"

ALGORITHMS = ["RS256"]
# A JWT from any of these issuers is well under 4 KB; anything longer is not worth decoding.
MAX_TOKEN_CHARS = 16 * 1024
# A discovery document or JWKS is a few KB; a larger answer is not read.
MAX_DOCUMENT_BYTES = 256 * 1024
# Entra app roles (roles claim) or delegated scopes (scp claim) -> ImageTrail scopes.
ENTRA_SCOPES = {
    "imagetrail.ingest": SCOPE_INGEST, "ingest": SCOPE_INGEST,
    "imagetrail.read": SCOPE_READ, "read": SCOPE_READ,
    "imagetrail.remediate": SCOPE_REMEDIATE, "remediate": SCOPE_REMEDIATE,
    "imagetrail.admin": SCOPE_ADMIN, "admin": SCOPE_ADMIN,
}


class IssuerUnreachable(Exception):
    """The issuer's discovery document or keys could not be fetched."""


@dataclass(frozen=True)
class TrustedIssuer:
    kind: str
    issuer: str
    audience: str


class IssuerKeys:
    """The signing keys one trusted issuer publishes, fetched by one background thread at a time.

    No lock is held across I/O and no request thread does I/O: the first request that needs keys
    starts the fetch and every request waits for it (at most ``issuer_wait_ms``) on a future.
    A failed fetch is remembered for ``issuer_retry_seconds`` (requests meanwhile get a 503 at
    once), and an unknown key id triggers a new fetch at most that often, so forged tokens cannot
    make the server call the issuer more than once per window.
    """

    def __init__(self, issuer: str, settings: Settings):
        self.issuer = issuer
        self.lifespan = settings.jwks_cache_seconds
        self.timeout = settings.issuer_timeout_seconds
        self.retry_after = settings.issuer_retry_seconds
        self._lock = threading.Lock()  # guards the fields below; never held across I/O
        self._keys: Optional[Dict[str, Any]] = None  # kid -> public key
        self._fetched_at = float("-inf")
        self._failed_at = float("-inf")
        self._failure = ""
        self._pending: Optional["concurrent.futures.Future[None]"] = None
        self.fetches = 0  # fetches started (diagnostics, tests)

    def lookup(self, kid: str) -> Tuple[Any, Optional["concurrent.futures.Future[None]"]]:
        """(key, None) when the key is known; (None, future) while a fetch that may bring it runs;
        (None, None) when the issuer does not publish it. Raises IssuerUnreachable during the
        failure window."""
        now = time.monotonic()
        with self._lock:
            age = now - self._fetched_at
            key = (self._keys or {}).get(kid)
            if key is not None and age < self.lifespan:
                return key, None
            # Fetch when the keys expired, or the key id is unknown and the last fetch is not recent;
            # never while one runs, nor within the window after a failure.
            if (self._pending is None and age >= min(self.lifespan, self.retry_after)
                    and now - self._failed_at >= self.retry_after):
                self._pending = self._start_fetch()
            if key is not None and age < 2 * self.lifespan:
                return key, None  # stale: still used while the refresh runs
            if self._pending is not None:
                return None, self._pending
            if now - self._failed_at < self.retry_after:
                raise IssuerUnreachable(self._failure)
            return None, None

    def seconds_until_retry(self) -> int:
        return max(1, int(self._failed_at + self.retry_after - time.monotonic() + 0.999))

    def _start_fetch(self) -> "concurrent.futures.Future[None]":
        future: "concurrent.futures.Future[None]" = concurrent.futures.Future()
        future.set_running_or_notify_cancel()  # a waiter giving up cannot cancel it for the others
        self.fetches += 1
        threading.Thread(target=self._fetch, args=(future,), name="imagetrail-jwks-fetch", daemon=True).start()
        return future

    def _fetch(self, future: "concurrent.futures.Future[None]") -> None:
        try:
            keys = self._download()
        except IssuerUnreachable as exc:
            with self._lock:
                self._failed_at, self._failure, self._pending = time.monotonic(), str(exc), None
        else:
            with self._lock:
                self._keys, self._fetched_at, self._pending = keys, time.monotonic(), None
                self._failed_at = float("-inf")
        future.set_result(None)

    def _get_json(self, url: str, what: str) -> Any:
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                data = response.read(MAX_DOCUMENT_BYTES + 1)
            if len(data) > MAX_DOCUMENT_BYTES:
                raise ValueError("too large")
            return json.loads(data)
        except (OSError, ValueError) as exc:
            raise IssuerUnreachable(f"cannot read the {what} of {self.issuer} ({type(exc).__name__})") from None

    def _download(self) -> Dict[str, Any]:
        document = self._get_json(self.issuer + "/.well-known/openid-configuration", "OIDC discovery document")
        if not isinstance(document, dict) or document.get("issuer") != self.issuer or \
                not isinstance(document.get("jwks_uri"), str):
            raise IssuerUnreachable(f"the discovery document of {self.issuer} does not name this issuer "
                                    "and a jwks_uri")
        try:
            key_set = jwt.PyJWKSet.from_dict(self._get_json(document["jwks_uri"], "signing keys"))
        except (jwt.PyJWKSetError, jwt.InvalidKeyError, TypeError, AttributeError):
            raise IssuerUnreachable(f"the signing keys of {self.issuer} hold no usable key") from None
        return {k.key_id: k.key for k in key_set.keys if k.key_id and k.public_key_use in ("sig", None)}


class TokenVerifier:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.wait_seconds = settings.issuer_wait_ms / 1000
        # Exactly the configured issuers, spelt canonically: a variant of one (case, trailing
        # slash) is not trusted, so it can neither pass nor create its own key cache.
        self.trusted: Dict[str, TrustedIssuer] = {i.issuer: i for i in _configured_issuers(settings)}
        self.keys: Dict[str, IssuerKeys] = {name: IssuerKeys(name, settings) for name in self.trusted}

    def trusted_issuer(self, issuer: str) -> Optional[TrustedIssuer]:
        return self.trusted.get(issuer)

    # -- verification -----------------------------------------------------------------
    def verify(self, token: str) -> Principal:
        """The principal behind a job or Entra token; raises an HTTPException (401/403/503) otherwise.
        Blocking: waits up to ``issuer_wait_ms`` for a key fetch in flight."""
        trusted, kid = self._screen(token)
        key, pending = self._lookup(trusted, kid)
        if pending is not None:
            try:
                pending.result(timeout=self.wait_seconds)
            except concurrent.futures.TimeoutError:
                raise self._still_fetching(trusted) from None
            key = self._key_after_fetch(trusted, kid)
        return self._principal(token, trusted, key)

    async def verify_async(self, token: str) -> Principal:
        """``verify`` on the event loop: a request waiting for an issuer's keys holds no worker thread."""
        trusted, kid = self._screen(token)
        key, pending = self._lookup(trusted, kid)
        if pending is not None:
            try:
                await asyncio.wait_for(asyncio.wrap_future(pending), self.wait_seconds)
            except asyncio.TimeoutError:
                raise self._still_fetching(trusted) from None
            key = self._key_after_fetch(trusted, kid)
        return self._principal(token, trusted, key)

    def _screen(self, token: str) -> Tuple[TrustedIssuer, str]:
        """Which trusted issuer the (unverified) token names, and its key id: no I/O."""
        if len(token) > MAX_TOKEN_CHARS:
            raise unauthorized(f"the bearer credential is longer than {MAX_TOKEN_CHARS} characters")
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise unauthorized("the bearer credential is neither an ImageTrail API key nor a JWT") from None
        issuer = unverified.get("iss")
        trusted = self.trusted.get(issuer) if isinstance(issuer, str) else None
        if trusted is None:
            shown = issuer[:200] if isinstance(issuer, str) else "(none)"
            raise unauthorized(f"tokens from issuer {shown!r} are not trusted; configure "
                               "IMAGETRAIL_TRUST_AZURE_DEVOPS_ORGS, IMAGETRAIL_TRUST_GITHUB_OWNERS or "
                               "IMAGETRAIL_TRUST_ENTRA_TENANTS (issuers must match exactly)")
        kid = header.get("kid")
        if header.get("alg") not in ALGORITHMS or not isinstance(kid, str) or not kid:
            raise unauthorized(f"the token header must name an RS256 signing key (alg, kid) of {trusted.issuer}")
        return trusted, kid

    def _lookup(self, trusted: TrustedIssuer, kid: str) -> Tuple[Any, Optional["concurrent.futures.Future[None]"]]:
        keys = self.keys[trusted.issuer]
        try:
            return keys.lookup(kid)
        except IssuerUnreachable as exc:
            raise unavailable(f"{exc}; try again later", keys.seconds_until_retry()) from None

    def _key_after_fetch(self, trusted: TrustedIssuer, kid: str) -> Any:
        key, pending = self._lookup(trusted, kid)
        if pending is not None:  # another fetch started meanwhile (keys expired): do not wait twice
            raise self._still_fetching(trusted)
        return key

    def _still_fetching(self, trusted: TrustedIssuer) -> HTTPException:
        return unavailable(f"the signing keys of {trusted.issuer} are being fetched; try again shortly",
                           max(1, self.settings.issuer_timeout_seconds))

    def _principal(self, token: str, trusted: TrustedIssuer, key: Any) -> Principal:
        if key is None:
            raise unauthorized(f"the token is not signed by a key that {trusted.issuer} publishes")
        claims = self._verified_claims(token, trusted, key)
        if trusted.kind == KIND_AZURE_DEVOPS:
            return _azure_devops_principal(claims)
        if trusted.kind == KIND_GITHUB:
            return _github_principal(claims, self.settings)
        return _entra_principal(claims, self.settings)

    def _verified_claims(self, token: str, trusted: TrustedIssuer, key: Any) -> Dict[str, Any]:
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


def _configured_issuers(settings: Settings) -> List[TrustedIssuer]:
    """Every issuer the settings trust, spelt the way the issuer itself writes ``iss``."""
    issuers = [TrustedIssuer(KIND_AZURE_DEVOPS, f"{settings.azure_devops_issuer_base}/{org_id}",
                             settings.azure_devops_audience) for org_id in settings.azure_devops_org_ids]
    if settings.github_owners:
        issuers.append(TrustedIssuer(KIND_GITHUB, settings.github_issuer, settings.token_audience))
    if settings.entra_audience:
        issuers += [TrustedIssuer(KIND_ENTRA, f"{settings.entra_authority_base}/{tenant}/v2.0",
                                  settings.entra_audience) for tenant in settings.entra_tenant_ids]
    return issuers


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
