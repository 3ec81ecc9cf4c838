"""Building test reports with the real report contract (imagetrail.report)."""

from __future__ import annotations

import hashlib
from typing import Any, Dict, List, Optional

from imagetrail.report import (
    SYSTEM_AZURE_DEVOPS,
    SYSTEM_GITHUB,
    Job,
    Named,
    Person,
    PipelineContext,
    Platform,
    Push,
    Report,
    Repository,
    Run,
)

ADO_ORG_ID = "5a2f0c7e-1d3b-4c8e-9f60-2b7d8e9a1c01"
ADO_PROJECT_ID = "7c1e2d3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"


def digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def ado_report(*, org: str = "contoso", org_id: str = ADO_ORG_ID, project: str = "Web",
               project_id: str = ADO_PROJECT_ID, pipeline_id: str = "12", run_id: str = "345", job: str = "Build",
               pushes: Optional[List[Push]] = None, commit: str = "a" * 40,
               requester: Optional[Person] = None) -> Report:
    return Report(
        context=PipelineContext(
            system=SYSTEM_AZURE_DEVOPS, server_url=f"https://dev.azure.com/{org}/",
            organization=Named(org_id, org), project=Named(project_id, project),
            pipeline=Named(pipeline_id, "web-ci"), run=Run(run_id, f"20240601.{run_id}", 1, None, "IndividualCI"),
            job=Job(job.lower(), job, 1, "build"),
            repository=Repository("r1", "web", f"https://dev.azure.com/{org}/{project}/_git/web", "TfsGit",
                                  "refs/heads/main", commit),
            requester=requester or Person("u1", "Ann Owner", "ann@contoso.example"),
        ),
        pushes=pushes if pushes is not None else [push("127.0.0.1:5000/web/app:1.0", digest(run_id + job))],
    )


def github_report(*, owner: str = "octo-org", repo: str = "octo-org/app", repo_id: str = "123456",
                  run_id: str = "9001", attempt: int = 1, pushes: Optional[List[Push]] = None) -> Report:
    return Report(
        context=PipelineContext(
            system=SYSTEM_GITHUB, server_url="https://github.com", organization=Named("42", owner),
            project=Named(repo_id, repo), pipeline=Named(f"{repo}/.github/workflows/ci.yml", "ci"),
            run=Run(run_id, "17", attempt, None, "push"), job=Job("build", "build", attempt, None),
            repository=Repository(repo_id, repo, f"https://github.com/{repo}", "GitHub", "refs/heads/main", "b" * 40),
            requester=Person("7", "octocat", None),
        ),
        pushes=pushes if pushes is not None else [push("ghcr.io/octo-org/app:1.0", digest(run_id))],
    )


def push(reference: str, image_digest: Optional[str], *, platforms: Optional[List[Platform]] = None,
         pushed_at: Optional[str] = None) -> Push:
    name, _, tag = reference.rpartition(":")
    registry, _, repository = name.partition("/")
    return Push(reference=reference, registry=registry, repository=repository, tag=tag, digest=image_digest,
                pushed_at=pushed_at, platforms=platforms or [],
                digest_error=None if image_digest else "the registry did not answer")


def body(report: Report) -> Dict[str, Any]:
    return report.to_dict()
