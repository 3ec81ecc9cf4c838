"""Kept reports of Azure DevOps runs, through the ``azure-devops`` package.

Listing and downloading are remote.azure_devops_builds (shared with ``imagetrail reconcile``). A
report is ingested with the identity of the build it was attached to: Builds - Get gives the claims,
with the same names as the job token the collector would have sent (see ``auth.tokens``), so the
report is checked against its run exactly as a delivered one would be.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, Iterator, Optional

from imagetrail.auth import SCOPE_INGEST, Principal
from imagetrail.auth.tokens import KIND_AZURE_DEVOPS_API
from imagetrail.remote.azure_devops_builds import builds_with_reports, download
from imagetrail.services.reconcile.sources import KeptReport, SourceError

# The Azure DevOps resource (application id) that Entra access tokens for its REST API name.
AZURE_DEVOPS_SCOPE = "499b84ac-1321-427f-aa17-267ca6975798/.default"
PUBLIC_AUTHORITY = "https://login.microsoftonline.com"


def _text(value: Any) -> Optional[str]:
    return str(value) if value not in (None, "") else None


def build_claims(organization: str, build: Any) -> Dict[str, Any]:
    """Job-token claims (names as in ``auth.tokens``) from a Builds - Get answer."""
    project, definition, repository = build.project, build.definition, build.repository
    claims = {
        "sub": f"p://{organization}/{getattr(project, 'name', '')}/{getattr(definition, 'name', '')}",
        "prj_id": _text(getattr(project, "id", None)),
        "def_id": _text(getattr(definition, "id", None)),
        "run_id": _text(build.id),
        "rpo_id": _text(getattr(repository, "id", None)),
        "rpo_uri": _text(getattr(repository, "url", None)),
        "rpo_ver": _text(build.source_version),
        "rpo_ref": _text(build.source_branch),
    }
    return {name: value for name, value in claims.items() if value is not None}


def build_principal(organization: str, build: Any) -> Principal:
    claims = build_claims(organization, build)
    return Principal(kind=KIND_AZURE_DEVOPS_API, subject=claims["sub"], scopes=frozenset({SCOPE_INGEST}),
                     organizations=frozenset({organization.lower()}), claims=claims)


def credentials(settings: Any) -> Any:
    """msrest credentials for the configured identity: a PAT, or an Entra app's access token (msal)."""
    from msrest.authentication import BasicAuthentication, BasicTokenAuthentication

    if settings.azure_devops_pat:
        return BasicAuthentication("", settings.azure_devops_pat)
    import msal

    try:
        app = msal.ConfidentialClientApplication(
            settings.azure_devops_client_id, client_credential=settings.azure_devops_client_secret,
            authority=f"{settings.entra_authority_base}/{settings.azure_devops_tenant_id}",
            # A configured authority (sovereign cloud, Azure Stack) is trusted as given.
            instance_discovery=settings.entra_authority_base == PUBLIC_AUTHORITY)
        result = app.acquire_token_for_client(scopes=[AZURE_DEVOPS_SCOPE]) or {}
    except Exception as exc:  # noqa: BLE001 - msal raises ValueError, requests errors, ...
        raise SourceError(f"Microsoft Entra ID could not be asked for an Azure DevOps token "
                          f"({type(exc).__name__}); check IMAGETRAIL_ENTRA_AUTHORITY_BASE and the network") from None
    token = result.get("access_token")
    if not token:
        reason = str(result.get("error_description") or result.get("error") or "no access token").splitlines()[0]
        raise SourceError(f"the Entra app could not get an Azure DevOps token: {reason[:200]} "
                          "(IMAGETRAIL_AZURE_DEVOPS_TENANT_ID / _CLIENT_ID / _CLIENT_SECRET)")
    return BasicTokenAuthentication({"access_token": token})


def kept_reports(org_url: str, organization: str, projects: Any, since: datetime, creds: Any,
                 limit: int, top: int = 1000) -> Iterator[KeptReport]:
    from azure.devops.connection import Connection
    from azure.devops.exceptions import AzureDevOpsClientRequestError, AzureDevOpsServiceError
    from msrest.exceptions import ClientRequestError

    failures = (AzureDevOpsClientRequestError, AzureDevOpsServiceError, ClientRequestError)
    try:
        build_client = Connection(base_url=org_url, creds=creds).clients.get_build_client()
    except failures as exc:
        raise SourceError(f"Azure DevOps at {org_url}: {str(exc).splitlines()[0][:300]}") from None
    for project in projects:
        try:
            found = list(builds_with_reports(build_client, project, since, top))
        except failures as exc:
            raise SourceError(f"Azure DevOps at {org_url}, project {project}: "
                              f"{str(exc).splitlines()[0][:300]}") from None
        builds: Dict[int, Any] = {}
        for build, attachment in found:
            where = f"{organization}/{project} build {build.id} attachment {attachment.name}"
            try:
                if build.id not in builds:
                    builds[build.id] = build_client.get_build(project, build.id)
                content = download(build_client, project, build.id, attachment, limit)
            except failures + (ValueError,) as exc:
                yield KeptReport(where, None, None, str(exc).splitlines()[0][:300])
                continue
            yield KeptReport(where, content, build_principal(organization, builds[build.id]))
