"""Single sign-on for the web explorer: OpenID Connect authorization code flow with PKCE.

Two providers, one shape (``begin`` -> redirect, ``finish`` -> verified id_token claims):

- ``entra``: Microsoft Entra ID through ``msal`` (``ConfidentialClientApplication``'s
  ``initiate_auth_code_flow`` / ``acquire_token_by_auth_code_flow``: state, nonce, PKCE S256).
- ``oidc``: any provider with a discovery document (OpenID Connect Discovery 1.0), with the
  flow of OpenID Connect Core 1.0 section 3.1 and PKCE S256 (RFC 7636).

Either way the id_token is then verified here against the provider's published keys (JWKS):
signature, issuer, audience (and ``azp``), expiry, nonce. msal checks state and nonce but
not the signature, so this check is never skipped. ``web/sso_grants.py`` turns the verified
claims into a principal.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import jwt
import requests

from imagetrail.settings import Settings

log = logging.getLogger("imagetrail.web.sso")

FETCH_TIMEOUT_SECONDS = 10
MAX_DOCUMENT_BYTES = 256 * 1024
# Asymmetric algorithms only: never "none" or an HMAC keyed with the (shared) client secret.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
# The refresh of a provider's keys on an unknown "kid" happens at most this often.
KEY_REFRESH_SECONDS = 60
# A failed fetch of a provider's discovery document or keys is answered from memory this long.
FAILURE_MEMORY_SECONDS = 15


class SsoFailed(Exception):
    """The sign-in did not complete; the message is safe to show (no token, no secret)."""

    def __init__(self, message: str, status_code: int = 400):
        super().__init__(message)
        self.status_code = status_code


def _is_loopback(host: Optional[str]) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_endpoint(url: object, name: str) -> str:
    """Provider endpoints must be https (plain http only on the loopback interface, for development)."""
    if not isinstance(url, str) or not url:
        raise SsoFailed(f"the provider's discovery document has no {name}", 502)
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and _is_loopback(parts.hostname)):
        raise SsoFailed(f"the provider's {name} must be an https URL", 502)
    return url


def _get_json(http: requests.Session, url: str, what: str) -> Dict[str, Any]:
    try:
        response = http.get(url, timeout=FETCH_TIMEOUT_SECONDS, headers={"Accept": "application/json"})
        if response.status_code != 200 or len(response.content) > MAX_DOCUMENT_BYTES:
            raise SsoFailed(f"the provider's {what} answered HTTP {response.status_code}", 502)
        document = response.json()
    except (requests.RequestException, ValueError):
        raise SsoFailed(f"cannot read the provider's {what}; try again later", 502) from None
    if not isinstance(document, dict):
        raise SsoFailed(f"the provider's {what} is not a JSON object", 502)
    return document


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    token_auth_methods: List[str]
    algorithms: List[str]


class _Remembered:
    """One fetched value with its age, and the last failure, remembered briefly so that a provider
    that is down is not asked again by every sign-in. No lock is held while fetching."""

    def __init__(self) -> None:
        self.value: Any = None
        self.fetched_at = 0.0
        self.failure: Optional[SsoFailed] = None
        self.failed_at = 0.0
        self.lock = threading.Lock()

    def get(self, fetch, max_age: float) -> Any:
        now = time.monotonic()
        with self.lock:
            if self.value is not None and now - self.fetched_at <= max_age:
                return self.value
            if self.failure is not None and now - self.failed_at < FAILURE_MEMORY_SECONDS:
                raise self.failure
        try:
            value = fetch()
        except SsoFailed as exc:
            with self.lock:
                self.failure, self.failed_at = exc, time.monotonic()
            raise
        with self.lock:
            self.value, self.fetched_at, self.failure = value, time.monotonic(), None
        return value


class Discovery:
    """An issuer's discovery document and keys, fetched on first use and cached."""

    def __init__(self, issuer: str, discovery_url: str, lifespan: int, http: requests.Session):
        self.issuer = issuer
        self.discovery_url = discovery_url
        self.lifespan = lifespan
        self.http = http
        self._metadata = _Remembered()
        self._keys = _Remembered()

    def metadata(self) -> ProviderMetadata:
        return self._metadata.get(self._fetch_metadata, self.lifespan)

    def _fetch_metadata(self) -> ProviderMetadata:
        document = _get_json(self.http, self.discovery_url, "discovery document")
        if document.get("issuer") != self.issuer:  # OpenID Connect Discovery 1.0, section 4.3
            raise SsoFailed(f"the discovery document names issuer {str(document.get('issuer'))[:200]!r}, "
                            f"not the configured {self.issuer!r}", 502)
        offered = document.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = [a for a in ALGORITHMS if a in offered]
        if not algorithms:
            raise SsoFailed("the provider signs id_tokens with no algorithm ImageTrail accepts", 502)
        methods = document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        return ProviderMetadata(
            issuer=self.issuer,
            authorization_endpoint=_check_endpoint(document.get("authorization_endpoint"),
                                                   "authorization_endpoint"),
            token_endpoint=_check_endpoint(document.get("token_endpoint"), "token_endpoint"),
            jwks_uri=_check_endpoint(document.get("jwks_uri"), "jwks_uri"),
            token_auth_methods=[str(m) for m in methods] if isinstance(methods, list) else [],
            algorithms=algorithms,
        )

    def signing_key(self, kid: Optional[str]) -> Any:
        keys = self._keys.get(self._fetch_keys, self.lifespan)
        if kid not in keys and time.monotonic() - self._keys.fetched_at > KEY_REFRESH_SECONDS:
            keys = self._keys.get(self._fetch_keys, 0)  # keys rotate: an unknown kid refetches, once a minute
        if kid in keys:
            return keys[kid]
        if kid is None and len(keys) == 1:
            return next(iter(keys.values()))
        raise SsoFailed("the id_token is not signed with a key the provider publishes", 400)

    def _fetch_keys(self) -> Dict[str, Any]:
        document = _get_json(self.http, self.metadata().jwks_uri, "keys (jwks_uri)")
        try:
            key_set = jwt.PyJWKSet.from_dict(document)
        except jwt.PyJWTError:
            raise SsoFailed("the provider's keys (jwks_uri) hold no usable signing key", 502) from None
        return {k.key_id: k.key for k in key_set.keys if k.public_key_use in (None, "sig")}


def verify_id_token(discovery: Discovery, raw: object, client_id: str, nonce: str, leeway: int) -> Dict[str, Any]:
    """The claims of ``raw`` once its signature, issuer, audience, expiry and nonce all check out."""
    if not isinstance(raw, str) or not raw:
        raise SsoFailed("the provider's token response has no id_token", 502)
    metadata = discovery.metadata()
    try:
        header = jwt.get_unverified_header(raw)
    except jwt.PyJWTError:
        raise SsoFailed("the id_token is malformed", 400) from None
    if header.get("alg") not in metadata.algorithms:
        raise SsoFailed(f"the id_token's algorithm {str(header.get('alg'))[:20]!r} is not accepted", 400)
    key = discovery.signing_key(header.get("kid"))
    try:
        claims = jwt.decode(raw, key, algorithms=metadata.algorithms, audience=client_id, issuer=metadata.issuer,
                            leeway=leeway, options={"require": ["iss", "aud", "exp", "iat", "sub"]})
    except jwt.ExpiredSignatureError:
        raise SsoFailed("the id_token has expired; sign in again", 400) from None
    except jwt.PyJWTError as exc:  # PyJWT names the failed check, never the token
        raise SsoFailed(f"the id_token is not valid: {exc}", 400) from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:  # OpenID Connect Core 1.0, 3.1.3.7
        raise SsoFailed("the id_token is meant for several clients but not authorised for this one", 400)
    if not isinstance(claims.get("nonce"), str) or not secrets.compare_digest(claims["nonce"], nonce):
        raise SsoFailed("the id_token's nonce does not match this sign-in; start again", 400)
    return claims


def _pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _callback_params(params: Mapping[str, str], flow: Mapping[str, Any]) -> str:
    """The authorization code from the provider's redirect, once its state matches the flow's."""
    if params.get("error"):
        text = str(params.get("error_description") or params["error"])[:300]
        raise SsoFailed(f"the identity provider refused the sign-in: {text}", 403)
    state = params.get("state")
    if not isinstance(state, str) or not secrets.compare_digest(state, str(flow.get("state", ""))):
        raise SsoFailed("the sign-in's state does not match the one this browser started; start again", 400)
    code = params.get("code")
    if not code:
        raise SsoFailed("the provider's redirect carries no authorization code", 400)
    return code


class OidcProvider:
    """Any OpenID Connect provider, configured by its issuer URL (IMAGETRAIL_SSO_ISSUER)."""

    name = "oidc"
    label = "Sign in with single sign-on"

    def __init__(self, settings: Settings, http: Optional[requests.Session] = None):
        self.settings = settings
        self.http = http or requests.Session()
        issuer = settings.sso_issuer
        self.discovery = Discovery(issuer, issuer + "/.well-known/openid-configuration",
                                   settings.jwks_cache_seconds, self.http)

    def begin(self, redirect_uri: str) -> Dict[str, Any]:
        metadata = self.discovery.metadata()
        flow = {"state": secrets.token_urlsafe(32), "nonce": secrets.token_urlsafe(32),
                "code_verifier": secrets.token_urlsafe(64), "redirect_uri": redirect_uri}
        scopes = ["openid", *[s for s in self.settings.sso_scopes or ["profile", "email"] if s != "openid"]]
        query = urlencode({
            "response_type": "code", "client_id": self.settings.sso_client_id, "redirect_uri": redirect_uri,
            "scope": " ".join(scopes), "state": flow["state"], "nonce": flow["nonce"],
            "code_challenge": _pkce_challenge(flow["code_verifier"]), "code_challenge_method": "S256",
        })
        separator = "&" if "?" in metadata.authorization_endpoint else "?"
        flow["auth_uri"] = metadata.authorization_endpoint + separator + query
        return flow

    def finish(self, flow: Mapping[str, Any], params: Mapping[str, str]) -> Dict[str, Any]:
        code = _callback_params(params, flow)
        metadata = self.discovery.metadata()
        s = self.settings
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": flow["redirect_uri"],
                "code_verifier": flow["code_verifier"]}
        auth = None
        if "client_secret_basic" in metadata.token_auth_methods:  # RFC 6749 section 2.3.1: form-encoded first
            auth = (quote(s.sso_client_id, safe=""), quote(s.sso_client_secret, safe=""))
        else:
            data.update(client_id=s.sso_client_id, client_secret=s.sso_client_secret)
        try:
            response = self.http.post(metadata.token_endpoint, data=data, auth=auth,
                                      headers={"Accept": "application/json"}, timeout=FETCH_TIMEOUT_SECONDS)
            answer = response.json() if len(response.content) <= MAX_DOCUMENT_BYTES else {}
        except (requests.RequestException, ValueError):
            raise SsoFailed("the provider's token endpoint did not answer; try again later", 502) from None
        if response.status_code != 200 or not isinstance(answer, dict):
            error = str(answer.get("error") if isinstance(answer, dict) else "")[:100]
            log.warning("token endpoint answered %s %s", response.status_code, error)
            raise SsoFailed(f"the provider refused to exchange the code (HTTP {response.status_code} "
                            f"{error}); start the sign-in again", 502)
        return verify_id_token(self.discovery, answer.get("id_token"), s.sso_client_id, flow["nonce"],
                               s.token_leeway_seconds)


class EntraProvider:
    """Microsoft Entra ID (IMAGETRAIL_SSO_ENTRA_TENANT), through msal's auth code flow helpers."""

    name = "entra"
    label = "Sign in with Microsoft"

    def __init__(self, settings: Settings, http: Optional[requests.Session] = None):
        self.settings = settings
        self.http = http or requests.Session()
        self.authority = f"{settings.entra_authority_base}/{settings.sso_entra_tenant}"
        # msal caches discovery answers here, so a client per sign-in costs no network round trip.
        self.http_cache: Dict[str, Any] = {}
        self.discovery = Discovery(self.authority + "/v2.0", self.authority + "/v2.0/.well-known/openid-configuration",
                                   settings.jwks_cache_seconds, self.http)

    def _client(self):
        import msal

        # One client per sign-in step, each with its own token cache: the server keeps no user's
        # tokens, only the session it opens. The authority is configuration, so msal's instance
        # discovery (a call to login.microsoftonline.com to vet the host) is not needed.
        return msal.ConfidentialClientApplication(
            self.settings.sso_client_id, client_credential=self.settings.sso_client_secret,
            authority=self.authority, instance_discovery=False, http_client=self.http,
            http_cache=self.http_cache, token_cache=msal.TokenCache(),
        )

    def begin(self, redirect_uri: str) -> Dict[str, Any]:
        try:
            return self._client().initiate_auth_code_flow(self.settings.sso_scopes, redirect_uri=redirect_uri)
        except (ValueError, requests.RequestException) as exc:
            log.warning("Entra sign-in could not start: %s", type(exc).__name__)
            raise SsoFailed("cannot reach Microsoft Entra ID (the tenant's discovery document); "
                            "check IMAGETRAIL_SSO_ENTRA_TENANT or try again later", 502) from None

    def finish(self, flow: Mapping[str, Any], params: Mapping[str, str]) -> Dict[str, Any]:
        _callback_params(params, flow)  # our own, clearer messages before msal's
        try:
            result = self._client().acquire_token_by_auth_code_flow(dict(flow), dict(params),
                                                                   scopes=self.settings.sso_scopes)
        except (ValueError, RuntimeError, requests.RequestException) as exc:
            # msal's messages may quote the id_token: log the kind of failure only.
            log.warning("Entra sign-in failed: %s", type(exc).__name__)
            raise SsoFailed("Microsoft Entra ID's answer did not match this sign-in; start again", 400) from None
        if "error" in result:
            log.warning("Entra token endpoint: %s", str(result.get("error"))[:100])
            raise SsoFailed(f"Microsoft Entra ID refused the sign-in ({str(result.get('error'))[:100]}); "
                            "start again", 502)
        # msal sends a hash of the flow's nonce; the id_token must carry what was sent.
        sent_nonce = parse_qs(urlsplit(str(flow.get("auth_uri", ""))).query).get("nonce", [""])[0]
        return verify_id_token(self.discovery, result.get("id_token"), self.settings.sso_client_id, sent_nonce,
                               self.settings.token_leeway_seconds)


def provider_for(settings: Settings):
    """The configured provider, or None when single sign-on is off."""
    if settings.sso_provider == "entra":
        return EntraProvider(settings)
    if settings.sso_provider == "oidc":
        return OidcProvider(settings)
    return None

