"""Does a report describe the job whose identity sent it?

A job token proves which organisation, project, pipeline and run it belongs to; a report
claiming anything else is refused, so one pipeline cannot write another's history. Reports that
reconcile fetched from a run (``azure-devops-api`` / ``github-api`` principals, whose claims the
backend built from the CI system's own answer about that run) are held to the same checks.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from imagetrail.report import SYSTEM_AZURE_DEVOPS, SYSTEM_GITHUB
from imagetrail.server.auth import Principal
from imagetrail.server.auth.tokens import (
    KIND_AZURE_DEVOPS,
    KIND_AZURE_DEVOPS_API,
    KIND_GITHUB,
    KIND_GITHUB_API,
    parse_pipeline_subject,
)


def _same(a: Any, b: Any) -> bool:
    return str(a).strip().lower() == str(b).strip().lower()


def _check(field: str, reported: Any, claimed: Any) -> Optional[str]:
    """A claim present in the token must be matched by the report."""
    if claimed in (None, ""):
        return None
    if reported in (None, "") or not _same(reported, claimed):
        return f"{field} is {reported!r} but the token was issued for {claimed!r}"
    return None


def _check_named(field: str, entity: Mapping[str, Any], claimed_id: Any, claimed_name: Any) -> Optional[str]:
    """Id and name are each compared when both sides have them; at least one must agree."""
    compared = False
    for key, claimed in (("id", claimed_id), ("name", claimed_name)):
        reported = entity.get(key)
        if claimed in (None, "") or reported in (None, ""):
            continue
        compared = True
        if not _same(reported, claimed):
            return f"{field}.{key} is {reported!r} but the token was issued for {claimed!r}"
    if not compared:
        return f"{field} is missing; the token was issued for {claimed_name or claimed_id!r}"
    return None


def report_conflict(principal: Principal, report: Mapping[str, Any]) -> Optional[str]:
    """Why this principal may not submit this report, or None when it may."""
    context = report.get("context") or {}
    organization = (context.get("organization") or {}).get("name")
    if principal.kind in (KIND_AZURE_DEVOPS, KIND_AZURE_DEVOPS_API):
        return _azure_devops_conflict(principal.claims, context)
    if principal.kind in (KIND_GITHUB, KIND_GITHUB_API):
        return _github_conflict(principal.claims, context)
    if not principal.may_access(organization):
        return f"this credential may not write reports of organisation {organization!r}"
    return None


def _azure_devops_conflict(claims: Mapping[str, Any], context: Mapping[str, Any]) -> Optional[str]:
    if context.get("system") != SYSTEM_AZURE_DEVOPS:
        return f"context.system is {context.get('system')!r} but the token is an Azure DevOps job token"
    org_name, project_name, _pipeline_name = parse_pipeline_subject(str(claims.get("sub") or ""))
    return (
        _check_named("context.organization", context.get("organization") or {}, claims.get("org_id"), org_name)
        or _check_named("context.project", context.get("project") or {}, claims.get("prj_id"), project_name)
        or _check("context.pipeline.id", (context.get("pipeline") or {}).get("id"), claims.get("def_id"))
        or _check("context.run.id", (context.get("run") or {}).get("id"), claims.get("run_id"))
    )


def _github_conflict(claims: Mapping[str, Any], context: Mapping[str, Any]) -> Optional[str]:
    if context.get("system") != SYSTEM_GITHUB:
        return f"context.system is {context.get('system')!r} but the token is a GitHub Actions token"
    run = context.get("run") or {}
    return (
        _check("context.organization.name", (context.get("organization") or {}).get("name"),
               claims.get("repository_owner"))
        or _check_named("context.project", context.get("project") or {}, claims.get("repository_id"),
                        claims.get("repository"))
        or _check("context.run.id", run.get("id"), claims.get("run_id"))
        or _check("context.run.attempt", run.get("attempt"), claims.get("run_attempt"))
    )
