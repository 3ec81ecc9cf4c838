"""Pipeline context of a GitHub Actions job, from the runner's default environment variables.

Variable names and meanings: GitHub Docs, "Variables reference" (default environment
variables). Values the runner does not set are ``None``, never guessed: GitHub does not
expose the triggering actor's e-mail or numeric id, so they stay unknown.
"""

from __future__ import annotations

from typing import Mapping, Optional

from imagetrail.report import SYSTEM_GITHUB, Agent, Job, Named, Person, PipelineContext, Repository, Run

# Same provider name Azure DevOps uses for GitHub repositories (Build.Repository.Provider),
# so one repository built by both systems is recognised as one.
REPOSITORY_TYPE = "GitHub"


def _value(env: Mapping[str, str], name: str) -> Optional[str]:
    value = (env.get(name) or "").strip()
    return value or None


def _count(env: Mapping[str, str], name: str) -> Optional[int]:
    value = _value(env, name)
    if value is None or not value.isdigit():
        return None
    return int(value)


def workflow_path(workflow_ref: Optional[str]) -> Optional[str]:
    """``owner/repo/.github/workflows/build.yml@refs/heads/main`` ->
    ``owner/repo/.github/workflows/build.yml``.

    The path identifies the workflow across branches; the ref part is the branch the run
    came from, which is already the repository branch of the report.
    """
    if not workflow_ref:
        return None
    path, _, _ = workflow_ref.partition("@")
    return path or None


def run_url(server_url: Optional[str], repository: Optional[str], run_id: Optional[str],
            attempt: Optional[int]) -> Optional[str]:
    if not (server_url and repository and run_id):
        return None
    url = f"{server_url}/{repository}/actions/runs/{run_id}"
    return f"{url}/attempts/{attempt}" if attempt is not None else url


def github_context(env: Mapping[str, str]) -> PipelineContext:
    """Map the runner's GITHUB_* / RUNNER_* variables onto the report's system-neutral context.

    organization = repository owner, project = ``owner/repo``, pipeline = workflow,
    requester = the actor who triggered this run attempt.
    """
    server_url = (_value(env, "GITHUB_SERVER_URL") or "").rstrip("/") or None
    repository = _value(env, "GITHUB_REPOSITORY")
    owner = _value(env, "GITHUB_REPOSITORY_OWNER")
    if owner is None and repository and "/" in repository:
        owner = repository.split("/", 1)[0]
    repository_id = _value(env, "GITHUB_REPOSITORY_ID")
    run_id = _value(env, "GITHUB_RUN_ID")
    attempt = _count(env, "GITHUB_RUN_ATTEMPT")

    actor = _value(env, "GITHUB_ACTOR")
    triggering_actor = _value(env, "GITHUB_TRIGGERING_ACTOR") or actor
    # GITHUB_ACTOR_ID belongs to GITHUB_ACTOR; it is the requester's id only when they are the same login.
    requester_id = _value(env, "GITHUB_ACTOR_ID") if triggering_actor == actor else None

    job = _value(env, "GITHUB_JOB")
    return PipelineContext(
        system=SYSTEM_GITHUB,
        server_url=server_url,
        organization=Named(id=_value(env, "GITHUB_REPOSITORY_OWNER_ID"), name=owner),
        project=Named(id=repository_id, name=repository),
        pipeline=Named(id=workflow_path(_value(env, "GITHUB_WORKFLOW_REF")),
                       name=_value(env, "GITHUB_WORKFLOW")),
        run=Run(
            id=run_id,
            number=_value(env, "GITHUB_RUN_NUMBER"),
            attempt=attempt,
            url=run_url(server_url, repository, run_id, attempt),
            reason=_value(env, "GITHUB_EVENT_NAME"),
        ),
        # GitHub has no per-job attempt: re-running a job starts a new run attempt.
        job=Job(id=job, name=job, attempt=None, stage=None),
        repository=Repository(
            id=repository_id,
            name=repository,
            uri=f"{server_url}/{repository}" if server_url and repository else None,
            type=REPOSITORY_TYPE if repository else None,
            branch=_value(env, "GITHUB_REF"),
            commit=_value(env, "GITHUB_SHA"),
        ),
        requester=Person(id=requester_id, name=triggering_actor, email=None),
        agent=Agent(
            name=_value(env, "RUNNER_NAME"),
            os=_value(env, "RUNNER_OS"),
            host_type=_value(env, "RUNNER_ENVIRONMENT"),
        ),
    )
