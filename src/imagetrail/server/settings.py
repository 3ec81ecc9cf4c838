"""Backend configuration, from the environment (IMAGETRAIL_*).

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
    max_report_bytes: int = 1_048_576
    # Azure DevOps REST API base for links and remediation (tests point it at a local server).
    azure_devops_url: str = "https://dev.azure.com"
    # Seconds a client should wait before retrying when the database is unavailable.
    retry_after_seconds: int = 5
    # Group commit: most reports one transaction takes, and how long the writer waits for more
    # after the first (0: take only what is already waiting; batches grow with the load anyway).
    ingest_max_batch: int = 200
    ingest_batch_wait_ms: int = 0
    # A verified API key is reused this long without a database lookup: a revoked key stops
    # working within this many seconds.
    api_key_cache_seconds: int = 5
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
    # GitHub: a token that may read Actions artifacts of the reporting repositories, and the REST API.
    github_token: Optional[str] = field(default=None, repr=False)
    github_api_url: str = "https://api.github.com"

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
            max_report_bytes=_int(env, "IMAGETRAIL_MAX_REPORT_BYTES", defaults.max_report_bytes),
            azure_devops_url=env.get("IMAGETRAIL_AZURE_DEVOPS_URL") or defaults.azure_devops_url,
            retry_after_seconds=_int(env, "IMAGETRAIL_RETRY_AFTER_SECONDS", defaults.retry_after_seconds),
            ingest_max_batch=_int(env, "IMAGETRAIL_INGEST_MAX_BATCH", defaults.ingest_max_batch),
            ingest_batch_wait_ms=_int(env, "IMAGETRAIL_INGEST_BATCH_WAIT_MS", defaults.ingest_batch_wait_ms,
                                      minimum=0),
            api_key_cache_seconds=_int(env, "IMAGETRAIL_API_KEY_CACHE_SECONDS", defaults.api_key_cache_seconds,
                                       minimum=0),
            reconcile_interval_seconds=_int(env, "IMAGETRAIL_RECONCILE_INTERVAL_SECONDS",
                                            defaults.reconcile_interval_seconds, minimum=0),
            reconcile_max_days=_int(env, "IMAGETRAIL_RECONCILE_MAX_DAYS", defaults.reconcile_max_days),
            reconcile_gap_seconds=_int(env, "IMAGETRAIL_RECONCILE_GAP_SECONDS", defaults.reconcile_gap_seconds),
            azure_devops_pat=env.get("IMAGETRAIL_AZURE_DEVOPS_PAT") or None,
            azure_devops_tenant_id=env.get("IMAGETRAIL_AZURE_DEVOPS_TENANT_ID") or None,
            azure_devops_client_id=env.get("IMAGETRAIL_AZURE_DEVOPS_CLIENT_ID") or None,
            azure_devops_client_secret=env.get("IMAGETRAIL_AZURE_DEVOPS_CLIENT_SECRET") or None,
            reconcile_azure_devops_orgs=[o.lower() for o in _list(env.get("IMAGETRAIL_RECONCILE_AZURE_DEVOPS_ORGS"))],
            github_token=env.get("IMAGETRAIL_GITHUB_TOKEN") or None,
            github_api_url=(env.get("IMAGETRAIL_GITHUB_API_URL") or defaults.github_api_url).rstrip("/"),
        )
