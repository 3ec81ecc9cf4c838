"""Pipeline context from the Azure Pipelines agent's environment.

Variable names follow Microsoft's "Use predefined variables" (YAML and classic builds)
and "Classic release and artifacts variables" pages; the agent exports ``System.JobId``
as ``SYSTEM_JOBID`` and so on. Missing or malformed values become None.
"""

from __future__ import annotations

from typing import Mapping, Optional
from urllib.parse import quote, urlsplit

from imagetrail.collector.text import clean
from imagetrail.report import (
    SYSTEM_AZURE_DEVOPS,
    Agent,
    Job,
    Named,
    Person,
    PipelineContext,
    Repository,
    Run,
)

ID_LIMIT = 200
NAME_LIMIT = 500
URL_LIMIT = 2048
RELEASE_HOST_TYPES = ("release", "deployment", "gates")


def _get(env: Mapping[str, str], *names: str, limit: int = NAME_LIMIT) -> Optional[str]:
    """The first of ``names`` that is set to something non-blank, cleaned and bounded."""
    for name in names:
        value = clean(env.get(name), limit)
        if value is not None:
            return value
    return None


def _int(env: Mapping[str, str], *names: str) -> Optional[int]:
    raw = _get(env, *names, limit=20)
    if raw is None or not raw.isdigit():
        return None
    return int(raw)


def collection_uri(env: Mapping[str, str]) -> Optional[str]:
    """The collection URI with a trailing slash, only if it is an http(s) URL."""
    raw = _get(env, "SYSTEM_COLLECTIONURI", "SYSTEM_TEAMFOUNDATIONCOLLECTIONURI", limit=URL_LIMIT)
    if raw is None or " " in raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return raw if raw.endswith("/") else raw + "/"


def organization_name(uri: Optional[str]) -> Optional[str]:
    """dev.azure.com/{org}, {org}.visualstudio.com, or the collection name of Azure DevOps Server
    (the last path segment, e.g. https://tfs.example.com/tfs/DefaultCollection/)."""
    if uri is None:
        return None
    parts = urlsplit(uri)
    host = (parts.hostname or "").lower()
    segments = [s for s in parts.path.split("/") if s]
    if host == "dev.azure.com" or host.endswith(".dev.azure.com"):
        return segments[0] if segments else None
    if host.endswith(".visualstudio.com"):
        return host.split(".", 1)[0]
    return segments[-1] if segments else None


def _run_url(uri: Optional[str], project: Optional[str], run_id: Optional[str],
             release: bool) -> Optional[str]:
    if uri is None or project is None or run_id is None or not run_id.isdigit():
        return None
    base = uri + quote(project, safe="")
    if release:
        return f"{base}/_releaseProgress?_a=release-pipeline-progress&releaseId={run_id}"
    return f"{base}/_build/results?buildId={run_id}"


def azure_devops_context(env: Mapping[str, str]) -> PipelineContext:
    host_type = _get(env, "SYSTEM_HOSTTYPE", limit=40)
    release = (host_type or "").lower() in RELEASE_HOST_TYPES or _get(env, "RELEASE_RELEASEID") is not None
    uri = collection_uri(env)
    project_id = _get(env, "SYSTEM_TEAMPROJECTID", limit=ID_LIMIT)
    project_name = _get(env, "SYSTEM_TEAMPROJECT")

    if release:
        pipeline = Named(
            id=_get(env, "RELEASE_DEFINITIONID", "SYSTEM_DEFINITIONID", limit=ID_LIMIT),
            name=_get(env, "RELEASE_DEFINITIONNAME"),
        )
        run_id = _get(env, "RELEASE_RELEASEID", limit=ID_LIMIT)
        run = Run(
            id=run_id,
            number=_get(env, "RELEASE_RELEASENAME"),
            attempt=_int(env, "RELEASE_ATTEMPTNUMBER"),
            url=_run_url(uri, project_id or project_name, run_id, release=True),
            reason=_get(env, "RELEASE_REASON", limit=ID_LIMIT),
        )
        requester = Person(
            id=_get(env, "RELEASE_DEPLOYMENT_REQUESTEDFORID", "RELEASE_REQUESTEDFORID", limit=ID_LIMIT),
            name=_get(env, "RELEASE_DEPLOYMENT_REQUESTEDFOR", "RELEASE_REQUESTEDFOR"),
            email=_get(env, "RELEASE_DEPLOYMENT_REQUESTEDFOREMAIL", "RELEASE_REQUESTEDFOREMAIL", limit=320),
        )
    else:
        pipeline = Named(
            id=_get(env, "SYSTEM_DEFINITIONID", limit=ID_LIMIT),
            name=_get(env, "BUILD_DEFINITIONNAME"),
        )
        run_id = _get(env, "BUILD_BUILDID", limit=ID_LIMIT)
        run = Run(
            id=run_id,
            number=_get(env, "BUILD_BUILDNUMBER"),
            attempt=None,  # builds have no run attempt; the job attempt says which retry this is
            url=_run_url(uri, project_id or project_name, run_id, release=False),
            reason=_get(env, "BUILD_REASON", limit=ID_LIMIT),
        )
        requester = Person(
            id=_get(env, "BUILD_REQUESTEDFORID", limit=ID_LIMIT),
            name=_get(env, "BUILD_REQUESTEDFOR"),
            email=_get(env, "BUILD_REQUESTEDFOREMAIL", limit=320),
        )

    return PipelineContext(
        system=SYSTEM_AZURE_DEVOPS,
        server_url=uri,
        organization=Named(id=_get(env, "SYSTEM_COLLECTIONID", limit=ID_LIMIT), name=organization_name(uri)),
        project=Named(id=project_id, name=project_name),
        pipeline=pipeline,
        run=run,
        job=Job(
            id=_get(env, "SYSTEM_JOBID", limit=ID_LIMIT),
            name=_get(env, "SYSTEM_JOBDISPLAYNAME", "SYSTEM_JOBNAME"),
            attempt=_int(env, "SYSTEM_JOBATTEMPT"),
            stage=_get(env, "SYSTEM_STAGEDISPLAYNAME", "SYSTEM_STAGENAME"),
        ),
        repository=Repository(
            id=_get(env, "BUILD_REPOSITORY_ID", limit=ID_LIMIT),
            name=_get(env, "BUILD_REPOSITORY_NAME"),
            uri=_get(env, "BUILD_REPOSITORY_URI", limit=URL_LIMIT),
            type=_get(env, "BUILD_REPOSITORY_PROVIDER", limit=ID_LIMIT),
            branch=_get(env, "BUILD_SOURCEBRANCH"),
            commit=_get(env, "BUILD_SOURCEVERSION", limit=ID_LIMIT),
        ),
        requester=requester,
        agent=Agent(name=_get(env, "AGENT_NAME"), os=_get(env, "AGENT_OS", limit=ID_LIMIT),
                    host_type=host_type),
    )
