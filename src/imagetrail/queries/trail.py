"""The push/trail join: a pushed digest up through its job, run, pipeline and project to its organisation.

Every reader of pushes (trace, explorer, web search, coverage, remediation) starts from ``pushes_joined`` and
restricts it with ``imagetrail.queries.visibility.organization_condition``; nothing else spells this join.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select, union

from imagetrail.store.models.pipeline import ImageRelation, Job, Organization, Pipeline, Project, Push, Run


def pushes_joined(*columns: Any) -> Select:
    """``SELECT columns FROM pushes JOIN jobs JOIN runs JOIN pipelines JOIN projects JOIN organizations``.

    Callers add their own joins (reference, report, repository, requester) and conditions on any of these tables.
    """
    return (
        select(*columns)
        .select_from(Push)
        .join(Job, Job.id == Push.job_id)
        .join(Run, Run.id == Job.run_id)
        .join(Pipeline, Pipeline.id == Run.pipeline_id)
        .join(Project, Project.id == Pipeline.project_id)
        .join(Organization, Organization.id == Project.organization_id)
    )


def with_related(digests: Select) -> Select:
    """The digests of ``digests`` (a one-column select) plus their index / platform-manifest relatives."""
    base = digests.subquery()
    column = base.c[0]
    return union(
        select(column),
        select(ImageRelation.manifest_digest).where(ImageRelation.index_digest.in_(select(column))),
        select(ImageRelation.index_digest).where(ImageRelation.manifest_digest.in_(select(column))),
    )
