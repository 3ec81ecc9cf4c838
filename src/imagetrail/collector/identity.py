"""The credential the report is sent with.

Order: ``IMAGETRAIL_API_KEY`` when set; otherwise the job's own OIDC identity token -
Azure Pipelines: ``POST $SYSTEM_OIDCREQUESTURI?api-version=7.1`` with ``SYSTEM_ACCESSTOKEN``
(REST "Oidctoken - Create", answer ``{"oidcToken": ...}``; the token's audience is fixed by
Azure DevOps to ``api://AzureADTokenExchange``); GitHub Actions: ``GET
$ACTIONS_ID_TOKEN_REQUEST_URL&audience=<IMAGETRAIL_AUDIENCE>`` with the request token
(answer ``{"value": ...}``). With ``IMAGETRAIL_ENTRA_CLIENT_ID``/``_TENANT_ID``/``_SCOPE``
the job token is exchanged with Microsoft Entra ID for an access token (workload identity
federation, msal ``client_assertion``); with ``IMAGETRAIL_ENTRA_MANAGED_IDENTITY=true`` a
self-hosted agent's managed identity is used instead.

msal is imported lazily, and only on the Entra paths: the extension vendors pure-Python
wheels, and msal needs ``cryptography`` only for certificate credentials. The
client-assertion path imports neither ``cryptography`` nor ``jwt`` (asserted by
tests/collector/test_identity.py), nor does msal's own import.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from imagetrail.collector.console import Console
from imagetrail.collector.context import detect_system
from imagetrail.collector.deadline import Deadline
from imagetrail.collector.settings import Settings

AZURE_OIDC_API_VERSION = "7.1"
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
IDENTITY_CAP_SECONDS = 8.0
RESERVE_SECONDS = 3.0  # left for delivery and for keeping the report


class IdentityError(Exception):
    pass


def _server_message(response: Any) -> str:
    text = (response.text or "").strip().replace("\n", " ")
    return text[:300]


def _token_from(response: Any, key: str, what: str) -> str:
    if response.status_code != 200:
        raise IdentityError(f"{what} failed: HTTP {response.status_code}: {_server_message(response)}")
    try:
        token = response.json().get(key)
    except (ValueError, AttributeError):
        token = None
    if not isinstance(token, str) or not token:
        raise IdentityError(f"{what} answered without a '{key}' field")
    return token


def azure_job_token(env: Mapping[str, str], settings: Settings, deadline: Deadline) -> str:
    import requests

    url = (env.get("SYSTEM_OIDCREQUESTURI") or "").strip()
    access_token = env.get("SYSTEM_ACCESSTOKEN") or ""
    if not url:
        raise IdentityError("SYSTEM_OIDCREQUESTURI is not set, so the job's identity token cannot be "
                            "requested; set IMAGETRAIL_API_KEY or use an agent that supports OIDC")
    if not access_token:
        raise IdentityError("SYSTEM_ACCESSTOKEN is not available to the ImageTrail step; "
                            "map System.AccessToken or set IMAGETRAIL_API_KEY")
    params = {"api-version": AZURE_OIDC_API_VERSION}
    if settings.service_connection_id:
        params["serviceConnectionId"] = settings.service_connection_id
    try:
        response = requests.post(
            url, params=params, timeout=deadline.timeout(IDENTITY_CAP_SECONDS, RESERVE_SECONDS),
            headers={"Authorization": f"Bearer {access_token}", "Content-Type": "application/json",
                     # without it Azure DevOps may answer an expired token with a sign-in redirect
                     "X-TFS-FedAuthRedirect": "Suppress"},
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        message = f"requesting the job's OIDC token from Azure DevOps failed: {type(exc).__name__}"
        raise IdentityError(message) from None
    return _token_from(response, "oidcToken", "requesting the job's OIDC token from Azure DevOps")


def github_job_token(env: Mapping[str, str], audience: str, deadline: Deadline) -> str:
    import requests

    url = (env.get("ACTIONS_ID_TOKEN_REQUEST_URL") or "").strip()
    request_token = env.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN") or ""
    if not url or not request_token:
        raise IdentityError("the job cannot request an OIDC token (ACTIONS_ID_TOKEN_REQUEST_URL/TOKEN are "
                            "not set); give the workflow 'permissions: id-token: write' or set "
                            "IMAGETRAIL_API_KEY")
    try:
        response = requests.get(
            url, params={"audience": audience},
            timeout=deadline.timeout(IDENTITY_CAP_SECONDS, RESERVE_SECONDS),
            headers={"Authorization": f"Bearer {request_token}", "Accept": "application/json"},
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        message = f"requesting the job's OIDC token from GitHub failed: {type(exc).__name__}"
        raise IdentityError(message) from None
    return _token_from(response, "value", "requesting the job's OIDC token from GitHub")


def _import_msal() -> Any:
    try:
        import msal
    except ImportError:
        raise IdentityError("msal is not installed, so no Microsoft Entra ID token can be obtained; "
                            "install msal next to the collector or unset IMAGETRAIL_ENTRA_*") from None
    return msal


def _entra_result(result: Optional[dict], what: str) -> str:
    result = result or {}
    token = result.get("access_token")
    if isinstance(token, str) and token:
        return token
    reason = result.get("error_description") or result.get("error") or "no access token in the answer"
    raise IdentityError(f"{what} failed: {str(reason).splitlines()[0][:300]}")


def entra_token_for_job(settings: Settings, job_token: str, deadline: Deadline) -> str:
    msal = _import_msal()
    authority = f"{settings.entra_authority_host or DEFAULT_AUTHORITY_HOST}/{settings.entra_tenant_id}"
    try:
        app = msal.ConfidentialClientApplication(
            settings.entra_client_id,
            authority=authority,
            client_credential={"client_assertion": job_token},
            # A configured authority host is trusted as given (sovereign clouds, Azure Stack);
            # instance discovery would ask login.microsoftonline.com about it.
            instance_discovery=settings.entra_authority_host is None,
            timeout=deadline.timeout(IDENTITY_CAP_SECONDS, RESERVE_SECONDS),
        )
        result = app.acquire_token_for_client(scopes=[settings.entra_scope])
    except IdentityError:
        raise
    except Exception as exc:  # noqa: BLE001 - msal raises ValueError, requests errors, ...
        message = f"Microsoft Entra ID token exchange failed: {type(exc).__name__}: {str(exc)[:200]}"
        raise IdentityError(message) from None
    return _entra_result(result, "Microsoft Entra ID token exchange (workload identity federation)")


def entra_token_for_managed_identity(settings: Settings, deadline: Deadline) -> str:
    msal = _import_msal()
    import requests

    identity = (msal.UserAssignedManagedIdentity(client_id=settings.entra_client_id)
                if settings.entra_client_id else msal.SystemAssignedManagedIdentity())
    scope = settings.entra_scope or ""
    resource = scope[: -len("/.default")] if scope.endswith("/.default") else scope
    timeout = deadline.timeout(IDENTITY_CAP_SECONDS, RESERVE_SECONDS)

    class TimeoutSession(requests.Session):
        # msal's managed identity client passes no timeout; a hanging endpoint must not hang the job
        def request(self, *args: Any, **kwargs: Any) -> Any:
            kwargs["timeout"] = kwargs.get("timeout") or timeout
            return super().request(*args, **kwargs)

    session = TimeoutSession()
    try:
        client = msal.ManagedIdentityClient(identity, http_client=session)
        result = client.acquire_token_for_client(resource=resource)
    except Exception as exc:  # noqa: BLE001
        message = f"managed identity token request failed: {type(exc).__name__}: {str(exc)[:200]}"
        raise IdentityError(message) from None
    return _entra_result(result, "managed identity token request")


def obtain_token(settings: Settings, env: Mapping[str, str], deadline: Deadline, console: Console) -> str:
    if settings.api_key:
        return settings.api_key
    entra = bool(settings.entra_client_id and settings.entra_tenant_id and settings.entra_scope)
    if settings.entra_managed_identity:
        if not settings.entra_scope:
            raise IdentityError("IMAGETRAIL_ENTRA_MANAGED_IDENTITY needs IMAGETRAIL_ENTRA_SCOPE")
        token = entra_token_for_managed_identity(settings, deadline)
        console.add_secret(token)
        return token
    system = detect_system(env)
    if system == "azure-devops":
        job_token = azure_job_token(env, settings, deadline)
    elif system == "github":
        job_token = github_job_token(env, settings.audience, deadline)
    else:
        raise IdentityError("no credential: set IMAGETRAIL_API_KEY")
    console.add_secret(job_token)
    if not entra:
        if settings.entra_client_id or settings.entra_tenant_id or settings.entra_scope:
            raise IdentityError("Microsoft Entra ID needs all of IMAGETRAIL_ENTRA_CLIENT_ID, "
                                "IMAGETRAIL_ENTRA_TENANT_ID and IMAGETRAIL_ENTRA_SCOPE")
        return job_token
    token = entra_token_for_job(settings, job_token, deadline)
    console.add_secret(token)
    return token

