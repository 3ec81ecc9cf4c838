"""Helpers for the cloud tests: principals, pipeline reports ingested through the real ingest path."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import sqlalchemy as sa

from imagetrail import report as r
from imagetrail.auth import SCOPE_ADMIN, SCOPE_INGEST, SCOPE_READ, Principal

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "cloud"

ADMIN = Principal(
    kind="api-key", subject="key:test-admin", scopes=frozenset({SCOPE_ADMIN}), organizations=None
)


def reader(*organizations: str) -> Principal:
    return Principal(
        kind="api-key",
        subject="key:test-reader",
        scopes=frozenset({SCOPE_READ}),
        organizations=frozenset(o.lower() for o in organizations),
    )


def ingester() -> Principal:
    return Principal(
        kind="api-key", subject="key:test-ingest", scopes=frozenset({SCOPE_INGEST}), organizations=None
    )


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def add_containers(conn, containers: Sequence[Tuple[str, Optional[str], Optional[str]]]) -> None:
    """A cluster ``prod`` running one container per (pod, digest, organisation copy) as a row, written directly
    (the migration and visibility tests set the copy themselves; NULL is a copy not filled yet)."""
    conn.execute(sa.text("INSERT INTO clusters (id, name, source, synced_at, pod_count, container_count, warnings) "
                         "VALUES (1, 'prod', 'file', '2024-06-01 00:00:00', :n, :n, '[]')"), {"n": len(containers)})
    conn.execute(sa.text(
        "INSERT INTO running_containers (id, cluster_id, cluster_name, namespace, pod, workload_kind, workload_name, "
        "container, container_kind, image, registry, repository, digest, exposed, exposure, organization_ids) "
        "VALUES (:n, 1, 'prod', 'ns', :pod, 'Pod', :pod, 'main', 'container', 'r/a:1', 'r.example', 'a', :digest, "
        "false, '[]', :copy)"),
        [{"n": n, "pod": pod, "digest": image_digest, "copy": copy}
         for n, (pod, image_digest, copy) in enumerate(containers, 1)])


def pipeline_report(
    organization: str,
    project: str,
    run_id: str,
    pushes: Sequence[r.Push],
    server_url: Optional[str] = None,
    requester_email: str = "dev@example.com",
    commit: str = "a" * 40,
    pipeline_id: str = "7",
) -> dict:
    context = r.PipelineContext(
        system=r.SYSTEM_AZURE_DEVOPS,
        server_url=server_url or f"https://dev.azure.com/{organization}/",
        organization=r.Named(id=f"{organization}-id", name=organization),
        project=r.Named(id=f"{project}-id", name=project),
        pipeline=r.Named(id=pipeline_id, name=f"{project}-ci"),
        run=r.Run(
            id=run_id,
            number=f"2024.{run_id}",
            attempt=1,
            url=f"https://dev.azure.com/{organization}/{project}/_build/results?buildId={run_id}",
        ),
        job=r.Job(id="job-1", name="Build", attempt=1),
        repository=r.Repository(
            id="repo-1",
            name=f"{project}-repo",
            uri=f"https://example.com/{project}.git",
            type="TfsGit",
            branch="refs/heads/main",
            commit=commit,
        ),
        requester=r.Person(id="p1", name="Dev Eloper", email=requester_email),
    )
    return r.Report(context=context, pushes=list(pushes), generated_at="2024-05-01T10:00:00Z").to_dict()


def push(
    reference: str,
    image_digest: str,
    pushed_at: str = "2024-05-01T10:00:00Z",
    platforms: Optional[List[r.Platform]] = None,
) -> r.Push:
    from imagetrail.reference import parse_reference

    name = parse_reference(reference)
    return r.Push(
        reference=reference,
        registry=name.registry,
        repository=name.repository,
        tag=name.tag,
        digest=image_digest,
        pushed_at=pushed_at,
        platforms=platforms or [],
    )
