"""Backend configuration, from the environment (IMAGETRAIL_*)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional

DEFAULT_DATABASE_URL = "sqlite:///imagetrail.db"


def _list(value: Optional[str]) -> List[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


@dataclass
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    # Trusted token issuers. Nothing is trusted until configured.
    # Azure DevOps: organisation ids (GUIDs) whose job tokens are accepted
    # (issuer https://vstoken.dev.azure.com/{id}).
    azure_devops_org_ids: List[str] = field(default_factory=list)
    # GitHub Actions: owners (orgs/users) whose workflow tokens are accepted.
    github_owners: List[str] = field(default_factory=list)
    # Audience the job tokens must carry.
    token_audience: str = "api://imagetrail"
    # Microsoft Entra ID: tenant ids whose access tokens are accepted, and the app id (audience).
    entra_tenant_ids: List[str] = field(default_factory=list)
    entra_audience: Optional[str] = None
    # Issuer base URLs overridable for tests (local issuers serving their own JWKS).
    azure_devops_issuer_base: str = "https://vstoken.dev.azure.com"
    github_issuer: str = "https://token.actions.githubusercontent.com"
    entra_authority_base: str = "https://login.microsoftonline.com"
    max_report_bytes: int = 1_048_576
    # Azure DevOps REST API base for links and remediation (tests point it at a local server).
    azure_devops_url: str = "https://dev.azure.com"

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ
        defaults = cls()
        return cls(
            database_url=env.get("IMAGETRAIL_DATABASE_URL", defaults.database_url),
            azure_devops_org_ids=_list(env.get("IMAGETRAIL_TRUST_AZURE_DEVOPS_ORGS")),
            github_owners=_list(env.get("IMAGETRAIL_TRUST_GITHUB_OWNERS")),
            token_audience=env.get("IMAGETRAIL_TOKEN_AUDIENCE", defaults.token_audience),
            entra_tenant_ids=_list(env.get("IMAGETRAIL_TRUST_ENTRA_TENANTS")),
            entra_audience=env.get("IMAGETRAIL_ENTRA_AUDIENCE") or None,
            azure_devops_issuer_base=env.get("IMAGETRAIL_AZURE_DEVOPS_ISSUER_BASE", defaults.azure_devops_issuer_base),
            github_issuer=env.get("IMAGETRAIL_GITHUB_ISSUER", defaults.github_issuer),
            entra_authority_base=env.get("IMAGETRAIL_ENTRA_AUTHORITY_BASE", defaults.entra_authority_base),
            max_report_bytes=int(env.get("IMAGETRAIL_MAX_REPORT_BYTES", defaults.max_report_bytes)),
            azure_devops_url=env.get("IMAGETRAIL_AZURE_DEVOPS_URL", defaults.azure_devops_url),
        )
