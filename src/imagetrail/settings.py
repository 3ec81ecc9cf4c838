"""Backend configuration, from the environment (IMAGETRAIL_*).

Read once: ``server.app.create_app`` builds the Settings (``Settings.from_env()``) and keeps them in
``app.state.settings``; routes and services take them from there, never from ``os.environ`` (a
request must not see a variable changed after startup, and tests pass Settings, not environment).

Nothing is trusted until configured: with no ``IMAGETRAIL_TRUST_*`` setting, only API
keys created with ``imagetrail keys create`` are accepted. docs/backend.md lists every
setting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional

DEFAULT_DATABASE_URL = "sqlite:///imagetrail.db"
# The audience Azure DevOps puts in job tokens from System.OidcRequestUri; the REST API
# ("Oidctoken - Create") has no parameter to choose another one.
AZURE_DEVOPS_DEFAULT_AUDIENCE = "api://AzureADTokenExchange"


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


def _list(value: Optional[str]) -> List[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _grants(env: Mapping[str, str], name: str) -> Dict[str, List[str]]:
    """``subject=org1|org2,subject2=*`` -> {subject: [org1, org2], subject2: ["*"]}."""
    grants: Dict[str, List[str]] = {}
    for item in _list(env.get(name)):
        subject, sep, orgs = item.partition("=")
        if not sep or not subject.strip() or not orgs.strip():
            raise SettingsError(f"{name}: expected 'object-or-client-id=org1|org2', got {item!r}")
        grants[subject.strip().lower()] = [o.strip().lower() for o in orgs.split("|") if o.strip()]
    return grants


def _mapping(env: Mapping[str, str], name: str, example: str) -> Dict[str, List[str]]:
    """``key=a|b,key2=c`` -> {key: [a, b], key2: [c]}; keys lower-cased, values kept as written."""
    mapping: Dict[str, List[str]] = {}
    for item in _list(env.get(name)):
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise SettingsError(f"{name}: expected entries like {example!r}, got {item!r}")
        mapping[key.strip().lower()] = [v.strip() for v in values.split("|") if v.strip()]
    return mapping


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class SsoGrant:
    """People whose role or group claim holds ``value`` may use ``scopes`` on ``organizations``."""

    value: str
    organizations: List[str]  # lower-cased names, or ["*"] for every organisation
    scopes: List[str]


SSO_PROVIDERS = ("entra", "oidc")
SSO_SCOPES = ("read", "remediate", "admin")


def _sso_grants(env: Mapping[str, str], name: str) -> List[SsoGrant]:
    """``role-or-group=org1|org2:read|remediate,other=*:admin`` -> grants, in order."""
    grants: List[SsoGrant] = []
    for item in _list(env.get(name)):
        value, sep, rest = item.rpartition("=")
        orgs, colon, scopes = rest.partition(":")
        wanted = [s.strip().lower() for s in scopes.split("|") if s.strip()]
        organizations = [o.strip().lower() for o in orgs.split("|") if o.strip()]
        if not sep or not value.strip() or not colon or not organizations or not wanted:
            raise SettingsError(f"{name}: expected 'role-or-group=org1|org2:read|remediate', got {item!r}")
        unknown = [s for s in wanted if s not in SSO_SCOPES]
        if unknown:
            raise SettingsError(f"{name}: scope {unknown[0]!r} in {item!r} is not one of {', '.join(SSO_SCOPES)}")
        grants.append(SsoGrant(value.strip(), organizations, wanted))
    return grants


@dataclass
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    # Azure DevOps: organisation ids (GUIDs, System.CollectionId) whose job tokens are accepted
    # (issuer {azure_devops_issuer_base}/{id}).
    azure_devops_org_ids: List[str] = field(default_factory=list)
    azure_devops_audience: str = AZURE_DEVOPS_DEFAULT_AUDIENCE
    # GitHub Actions: owners (orgs/users) whose workflow tokens are accepted.
    github_owners: List[str] = field(default_factory=list)
    # Audience GitHub workflow tokens must carry (the Action requests it with getIDToken(audience)).
    token_audience: str = "api://imagetrail"
    # Microsoft Entra ID: tenant ids whose access tokens are accepted, and the app id URI / client id (audience).
    entra_tenant_ids: List[str] = field(default_factory=list)
    entra_audience: Optional[str] = None
    # Organisations every Entra principal may act on ("*" = all), and per-principal grants
    # keyed by the token's oid / azp / appid.
    entra_organizations: List[str] = field(default_factory=list)
    entra_grants: Dict[str, List[str]] = field(default_factory=dict)
    # Issuer base URLs overridable for tests (local issuers serving their own JWKS).
    azure_devops_issuer_base: str = "https://vstoken.dev.azure.com"
    github_issuer: str = "https://token.actions.githubusercontent.com"
    entra_authority_base: str = "https://login.microsoftonline.com"
    # Clock skew allowed on exp / nbf / iat, in seconds.
    token_leeway_seconds: int = 60
    # How long a fetched discovery document / JWKS is reused before it is fetched again.
    jwks_cache_seconds: int = 3600
    # Fetching an issuer's keys: the timeout of each HTTP request; how long a failure is
    # remembered (and the least time between fetches for unknown key ids); how long a request
    # waits for a fetch in flight before it is answered 503.
    issuer_timeout_seconds: int = 3
    issuer_retry_seconds: int = 30
    issuer_wait_ms: int = 2000
    max_report_bytes: int = 1_048_576
    # Azure DevOps REST API base for links and remediation (tests point it at a local server).
    azure_devops_url: str = "https://dev.azure.com"
    # Azure DevOps Server collection URLs the PAT may be sent to (remediation, owners, reconcile), as
    # written; services.remediation_trust checks and normalises them, naming the variable.
    azure_devops_server_urls: List[str] = field(default_factory=list)
    # GitHub (docs/cloud.md, docs/backend.md): the REST API the token is sent to, the web URL runs must
    # report (github.com, or a GitHub Enterprise Server), and one token allowed issues: write (remediation,
    # owners) and actions: read (reconcile of kept reports) on the repositories.
    github_api_url: str = "https://api.github.com"
    github_server_url: str = "https://github.com"
    github_token: str = field(default="", repr=False)
    # Owners: more service identities that are never owners (shell-style patterns, docs/cloud.md).
    owner_service_identities: List[str] = field(default_factory=list)
    # Owners: pipeline (org/project/pipeline), project (org/project) or repository -> teams, and team ->
    # contacts (e-mails or @logins): IMAGETRAIL_OWNER_TEAMS, IMAGETRAIL_TEAM_CONTACTS.
    owner_teams: Dict[str, List[str]] = field(default_factory=dict)
    team_contacts: Dict[str, List[str]] = field(default_factory=dict)
    # Seconds a client should wait before retrying when the database is unavailable.
    retry_after_seconds: int = 5
    # Group commit: most reports one transaction takes, and how long the writer waits for more after the
    # first while under load (0: take only what is already waiting; an idle server never waits). 2 ms:
    # +10% reports/s and -13% server CPU per report in bench_ingest (benchmarks/results/bench_ingest.md).
    ingest_max_batch: int = 200
    ingest_batch_wait_ms: int = 2
    # A verified API key is reused this long without a database lookup: a revoked key stops
    # working within this many seconds.
    api_key_cache_seconds: int = 5
    # Interactive API docs at /docs (Swagger UI, whose assets FastAPI loads from a CDN): off unless asked.
    api_docs: bool = False
    # Web sign-in sessions: ended after this long without a request, and this long after sign-in.
    web_session_idle_minutes: int = 60
    web_session_max_hours: int = 12
    # Single sign-on for the web explorer (docs/web.md): "entra" (through msal) or "oidc" (any
    # provider with a discovery document); None: API-key sign-in only.
    sso_provider: Optional[str] = None
    sso_client_id: str = ""
    sso_client_secret: str = field(default="", repr=False)
    sso_issuer: str = ""  # oidc: the issuer URL, discovery at {issuer}/.well-known/openid-configuration
    sso_entra_tenant: str = ""  # entra: tenant id; authority {entra_authority_base}/{tenant}
    sso_redirect_uri: Optional[str] = None  # the public /auth/callback URL; default: from the request
    sso_scopes: List[str] = field(default_factory=list)  # extra scopes to request besides openid
    sso_groups_claim: str = "groups"  # oidc: claim (dotted path allowed) holding roles or groups
    sso_grants: List[SsoGrant] = field(default_factory=list)
    # Registries (docs/registries.md): the backend reads pushed images only from these hosts, over
    # plain HTTP only for loopback and the insecure ones, with credentials from a Docker config.json.
    registries: List[str] = field(default_factory=list)
    insecure_registries: List[str] = field(default_factory=list)
    registry_auth_file: Optional[str] = None
    registry_timeout_seconds: int = 10
    max_registry_event_bytes: int = 1_048_576
    # Who besides readers of every organisation may read a registry's pushes: host -> organisations.
    registry_organizations: Dict[str, List[str]] = field(default_factory=dict)
    # Reconcile (reports the collectors kept with their runs while they could not deliver):
    # how often, how far back at most, and after how long without a report a report wakes it.
    reconcile_interval_seconds: int = 900  # 0: never on a schedule (startup and gaps still run it)
    reconcile_max_days: int = 7
    reconcile_gap_seconds: int = 600
    # Azure DevOps identity for reading runs and attachments: a PAT with Build (read) scope, or an
    # Entra app (client credentials; the app added to the organisation with Build read access).
    azure_devops_pat: Optional[str] = field(default=None, repr=False)
    azure_devops_tenant_id: Optional[str] = None
    azure_devops_client_id: Optional[str] = None
    azure_devops_client_secret: Optional[str] = field(default=None, repr=False)
    # Azure DevOps organisations to reconcile besides those that already reported.
    reconcile_azure_devops_orgs: List[str] = field(default_factory=list)

    @property
    def azure_devops_identity(self) -> bool:
        """A PAT, or all three Entra app settings: reconcile can read Azure DevOps runs."""
        entra = bool(self.azure_devops_tenant_id and self.azure_devops_client_id and self.azure_devops_client_secret)
        return bool(self.azure_devops_pat or entra)

    @property
    def reconcile_configured(self) -> bool:
        return self.azure_devops_identity or bool(self.github_token)

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "Settings":
        env = os.environ if env is None else env
        defaults = cls()
        return cls(
            database_url=env.get("IMAGETRAIL_DATABASE_URL") or defaults.database_url,
            azure_devops_org_ids=[o.lower() for o in _list(env.get("IMAGETRAIL_TRUST_AZURE_DEVOPS_ORGS"))],
            azure_devops_audience=env.get("IMAGETRAIL_AZURE_DEVOPS_AUDIENCE") or defaults.azure_devops_audience,
            github_owners=[o.lower() for o in _list(env.get("IMAGETRAIL_TRUST_GITHUB_OWNERS"))],
            token_audience=env.get("IMAGETRAIL_TOKEN_AUDIENCE") or defaults.token_audience,
            entra_tenant_ids=[t.lower() for t in _list(env.get("IMAGETRAIL_TRUST_ENTRA_TENANTS"))],
            entra_audience=env.get("IMAGETRAIL_ENTRA_AUDIENCE") or None,
            entra_organizations=[o.lower() for o in _list(env.get("IMAGETRAIL_ENTRA_ORGS"))],
            entra_grants=_grants(env, "IMAGETRAIL_ENTRA_GRANTS"),
            azure_devops_issuer_base=(env.get("IMAGETRAIL_AZURE_DEVOPS_ISSUER_BASE")
                                      or defaults.azure_devops_issuer_base).rstrip("/"),
            github_issuer=(env.get("IMAGETRAIL_GITHUB_ISSUER") or defaults.github_issuer).rstrip("/"),
            entra_authority_base=(env.get("IMAGETRAIL_ENTRA_AUTHORITY_BASE")
                                  or defaults.entra_authority_base).rstrip("/"),
            token_leeway_seconds=_int(env, "IMAGETRAIL_TOKEN_LEEWAY_SECONDS", defaults.token_leeway_seconds),
            jwks_cache_seconds=_int(env, "IMAGETRAIL_JWKS_CACHE_SECONDS", defaults.jwks_cache_seconds),
            issuer_timeout_seconds=_int(env, "IMAGETRAIL_ISSUER_TIMEOUT_SECONDS", defaults.issuer_timeout_seconds),
            issuer_retry_seconds=_int(env, "IMAGETRAIL_ISSUER_RETRY_SECONDS", defaults.issuer_retry_seconds),
            issuer_wait_ms=_int(env, "IMAGETRAIL_ISSUER_WAIT_MS", defaults.issuer_wait_ms, minimum=0),
            max_report_bytes=_int(env, "IMAGETRAIL_MAX_REPORT_BYTES", defaults.max_report_bytes),
            azure_devops_url=env.get("IMAGETRAIL_AZURE_DEVOPS_URL") or defaults.azure_devops_url,
            azure_devops_server_urls=_list(env.get("IMAGETRAIL_AZURE_DEVOPS_SERVER_URLS")),
            github_api_url=(env.get("IMAGETRAIL_GITHUB_API_URL") or defaults.github_api_url).rstrip("/"),
            github_server_url=env.get("IMAGETRAIL_GITHUB_SERVER_URL") or defaults.github_server_url,
            github_token=(env.get("IMAGETRAIL_GITHUB_TOKEN") or "").strip(),
            owner_service_identities=_list(env.get("IMAGETRAIL_OWNER_SERVICE_IDENTITIES")),
            owner_teams=_mapping(env, "IMAGETRAIL_OWNER_TEAMS", "contoso/shop/shop-ci=payments|web"),
            team_contacts=_mapping(env, "IMAGETRAIL_TEAM_CONTACTS", "payments=pay@contoso.example|@octo/pay"),
            retry_after_seconds=_int(env, "IMAGETRAIL_RETRY_AFTER_SECONDS", defaults.retry_after_seconds),
            ingest_max_batch=_int(env, "IMAGETRAIL_INGEST_MAX_BATCH", defaults.ingest_max_batch),
            ingest_batch_wait_ms=_int(env, "IMAGETRAIL_INGEST_BATCH_WAIT_MS", defaults.ingest_batch_wait_ms,
                                      minimum=0),
            api_key_cache_seconds=_int(env, "IMAGETRAIL_API_KEY_CACHE_SECONDS", defaults.api_key_cache_seconds,
                                       minimum=0),
            api_docs=_bool(env, "IMAGETRAIL_API_DOCS"),
            web_session_idle_minutes=_int(env, "IMAGETRAIL_WEB_SESSION_IDLE_MINUTES",
                                          defaults.web_session_idle_minutes),
            web_session_max_hours=_int(env, "IMAGETRAIL_WEB_SESSION_MAX_HOURS", defaults.web_session_max_hours),
            **_sso_settings(env),
            registries=[r.lower() for r in _list(env.get("IMAGETRAIL_REGISTRIES"))],
            insecure_registries=[r.lower() for r in _list(env.get("IMAGETRAIL_INSECURE_REGISTRIES"))],
            registry_auth_file=env.get("IMAGETRAIL_REGISTRY_AUTH_FILE") or None,
            registry_timeout_seconds=_int(env, "IMAGETRAIL_REGISTRY_TIMEOUT_SECONDS",
                                          defaults.registry_timeout_seconds),
            max_registry_event_bytes=_int(env, "IMAGETRAIL_MAX_REGISTRY_EVENT_BYTES",
                                          defaults.max_registry_event_bytes),
            registry_organizations=_grants(env, "IMAGETRAIL_REGISTRY_ORGS"),
            reconcile_interval_seconds=_int(env, "IMAGETRAIL_RECONCILE_INTERVAL_SECONDS",
                                            defaults.reconcile_interval_seconds, minimum=0),
            reconcile_max_days=_int(env, "IMAGETRAIL_RECONCILE_MAX_DAYS", defaults.reconcile_max_days),
            reconcile_gap_seconds=_int(env, "IMAGETRAIL_RECONCILE_GAP_SECONDS", defaults.reconcile_gap_seconds),
            azure_devops_pat=env.get("IMAGETRAIL_AZURE_DEVOPS_PAT") or None,
            azure_devops_tenant_id=env.get("IMAGETRAIL_AZURE_DEVOPS_TENANT_ID") or None,
            azure_devops_client_id=env.get("IMAGETRAIL_AZURE_DEVOPS_CLIENT_ID") or None,
            azure_devops_client_secret=env.get("IMAGETRAIL_AZURE_DEVOPS_CLIENT_SECRET") or None,
            reconcile_azure_devops_orgs=[o.lower() for o in _list(env.get("IMAGETRAIL_RECONCILE_AZURE_DEVOPS_ORGS"))],
        )


def _sso_settings(env: Mapping[str, str]) -> Dict[str, object]:
    provider = (env.get("IMAGETRAIL_SSO_PROVIDER") or "").strip().lower() or None
    values: Dict[str, object] = dict(
        sso_provider=provider,
        sso_client_id=(env.get("IMAGETRAIL_SSO_CLIENT_ID") or "").strip(),
        sso_client_secret=(env.get("IMAGETRAIL_SSO_CLIENT_SECRET") or "").strip(),
        sso_issuer=(env.get("IMAGETRAIL_SSO_ISSUER") or "").strip().rstrip("/"),
        sso_entra_tenant=(env.get("IMAGETRAIL_SSO_ENTRA_TENANT") or "").strip().lower(),
        sso_redirect_uri=(env.get("IMAGETRAIL_SSO_REDIRECT_URI") or "").strip() or None,
        sso_scopes=_list((env.get("IMAGETRAIL_SSO_SCOPES") or "").replace(" ", ",")),
        sso_groups_claim=(env.get("IMAGETRAIL_SSO_GROUPS_CLAIM") or "groups").strip(),
        sso_grants=_sso_grants(env, "IMAGETRAIL_SSO_GRANTS"),
    )
    if provider is None:
        return values
    if provider not in SSO_PROVIDERS:
        raise SettingsError(f"IMAGETRAIL_SSO_PROVIDER must be one of {', '.join(SSO_PROVIDERS)}, got {provider!r}")
    required = ["IMAGETRAIL_SSO_CLIENT_ID", "IMAGETRAIL_SSO_CLIENT_SECRET", "IMAGETRAIL_SSO_GRANTS",
                "IMAGETRAIL_SSO_ENTRA_TENANT" if provider == "entra" else "IMAGETRAIL_SSO_ISSUER"]
    missing = [name for name in required if not (env.get(name) or "").strip()]
    if missing:
        raise SettingsError(f"IMAGETRAIL_SSO_PROVIDER={provider} also needs {', '.join(missing)} (docs/web.md)")
    return values
