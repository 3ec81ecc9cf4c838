"""Which pipelines pushed vulnerable images lately: "pushed in the last N days with critical or high
CVEs, by pipeline", running in a cluster or not.

One grouped query over ``pushes`` (the explorer's own filter model picks the pushes: organisation,
project, pipeline, registry, repository, severity, CVE, fix available, running) joined with each
digest's newest-scan summary. A digest pushed twice by one pipeline counts once.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Optional

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from imagetrail.auth import Principal
from imagetrail.queries.explorer import pushed_images
from imagetrail.store.models.cloud import VulnerabilitySummary, running_digests
from imagetrail.store.models.pipeline import Organization, Pipeline, Project, Push
from imagetrail.views.filters import ExplorerFilters
from imagetrail.views.pipelines import PipelineReport, PipelineVulnerabilities

DEFAULT_DAYS = 7
MAX_DAYS = 366
DEFAULT_MIN_SEVERITY = "high"
MAX_PIPELINES = 1000


def vulnerable_pushes_by_pipeline(
    session: Session,
    principal: Principal,
    days: int = DEFAULT_DAYS,
    filters: Optional[ExplorerFilters] = None,
    now: Optional[datetime] = None,
) -> PipelineReport:
    """Pipelines that pushed, in the last ``days`` days, images with findings at ``filters.min_severity``
    (default high) or above; worst first (critical findings, then high)."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}, not {days}")
    filters = filters or ExplorerFilters()
    since = (now or datetime.now(timezone.utc)) - timedelta(days=days)
    update = {"pushed_after": max(since, filters.pushed_after or since)}
    if filters.min_severity is None:
        update["min_severity"] = DEFAULT_MIN_SEVERITY
    filters = filters.model_copy(update=update)
    if filters.container_filtered():
        raise ValueError("exposed, cluster, namespace and untraced_push do not apply to pushes by pipeline")
    keys = (
        Organization.name.label("organization"),
        Project.name.label("project"),
        Pipeline.name.label("pipeline"),
        Pipeline.external_id.label("pipeline_id"),
    )
    pushed = (
        pushed_images(filters, principal)
        .with_only_columns(*keys, Push.digest.label("digest"), func.max(Push.pushed_at).label("pushed_at"))
        .group_by(*keys, Push.digest)
        .subquery()
    )
    vs = VulnerabilitySummary
    group = (pushed.c.organization, pushed.c.project, pushed.c.pipeline, pushed.c.pipeline_id)
    critical = func.sum(func.coalesce(vs.critical, 0))
    high = func.sum(func.coalesce(vs.high, 0))
    running = func.sum(case((pushed.c.digest.in_(running_digests()), 1), else_=0))
    rows = session.execute(
        select(*group, func.count(), running, critical, high, func.max(pushed.c.pushed_at))
        .outerjoin(vs, vs.digest == pushed.c.digest)
        .group_by(*group)
        .order_by(critical.desc(), high.desc(), *group)
        .limit(MAX_PIPELINES + 1)
    ).all()
    pipelines = [
        PipelineVulnerabilities(
            organization=org,
            project=project,
            pipeline=name,
            pipeline_id=external_id,
            images=images,
            running=int(running_count or 0),
            not_running=images - int(running_count or 0),
            critical=int(critical_count or 0),
            high=int(high_count or 0),
            last_pushed_at=last,
        )
        for org, project, name, external_id, images, running_count, critical_count, high_count, last in rows
    ]
    return PipelineReport(
        since=since,
        days=days,
        min_severity=filters.min_severity,
        pipelines=pipelines[:MAX_PIPELINES],
        truncated=len(pipelines) > MAX_PIPELINES,
    )
