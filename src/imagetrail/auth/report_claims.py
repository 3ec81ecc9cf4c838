"""Does a report describe the job whose identity sent it, and which of its facts does that prove?

A job token proves which organisation, project, pipeline and run it belongs to; a report
claiming anything else is refused, so one pipeline cannot write another's history. The token
also names the repository, branch and commit it was issued for (and, on GitHub, the actor):
a report contradicting them is refused with 403 naming the field, and facts that match are
**verified**. Everything else a report states is **claimed** (see ``assess``).

The binding is a function of ``(principal.kind, principal.claims)`` only, so any credential
kind that carries the same claim names verifies the same way: ``azure-devops-api`` principals
(claims built from Azure DevOps "Builds - Get" by whoever confirmed the run with the CI API)
use the Azure DevOps job token's claim names, and ``github-api`` principals (claims built by reconcile
from GitHub's own answer about a run) the GitHub job token's (docs/backend.md, "Evidence").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from imagetrail.auth import Principal
from imagetrail.auth.tokens import (
    KIND_AZURE_DEVOPS,
    KIND_AZURE_DEVOPS_API,
    KIND_GITHUB,
    KIND_GITHUB_API,
    parse_pipeline_subject,
)
from imagetrail.facts import CLAIMED, FACTS, IDENTITY_FACTS, VERIFIED
from imagetrail.report import SYSTEM_AZURE_DEVOPS, SYSTEM_GITHUB

# KIND_AZURE_DEVOPS_API: Azure DevOps build facts confirmed with the CI system's REST API ("Builds -
# Get"), with the job token's claim names (org_id, prj_id, def_id, run_id, rpo_id, rpo_uri, rpo_ver,
# rpo_ref); KIND_GITHUB_API likewise from GitHub's REST API, with the GitHub job token's names.
# Credential kinds whose claims are bound to one run: what they prove is verified.
BOUND_KINDS = frozenset({KIND_AZURE_DEVOPS, KIND_GITHUB, KIND_AZURE_DEVOPS_API, KIND_GITHUB_API})

# Identity facts each bound kind's token pins down (_identity_conflict refuses any other run);
# a GitHub token names its workflow only through workflow_ref (a binding below).
IDENTITY_BY_KIND = {KIND_AZURE_DEVOPS: IDENTITY_FACTS, KIND_AZURE_DEVOPS_API: IDENTITY_FACTS,
                    KIND_GITHUB: ("organization", "project", "run"),
                    KIND_GITHUB_API: ("organization", "project", "run")}
# Report fields a claim may fill in when the report lacks them (the claim holds the same value).
FILLABLE = ("uri", "branch", "commit")


def _same(a: Any, b: Any) -> bool:
    return str(a).strip().lower() == str(b).strip().lower()


def _uri(value: Any) -> str:
    """A clone URL without credentials, trailing '/' or '.git', lower-cased."""
    parts = urlsplit(str(value).strip())
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    path = parts.path.rstrip("/")
    path = path[:-4] if path.endswith(".git") else path
    return f"{parts.scheme}://{host}{path}".lower() if parts.scheme else str(value).strip().lower()


def _same_uri(reported: Any, claimed: Any) -> bool:
    return _uri(reported) == _uri(claimed)


def _names_repository(reported_uri: Any, repository: Any) -> bool:
    """A GitHub clone URL's path is /owner/repo (the host is the server's, GHES included)."""
    path = urlsplit(str(reported_uri).strip()).path.rstrip("/")
    path = path[:-4] if path.endswith(".git") else path
    return path.lower() == "/" + str(repository).strip().lower()


def _workflow(workflow_ref: Any) -> Optional[str]:
    """``owner/repo/.github/workflows/ci.yml@refs/heads/main`` -> the path (the report's pipeline id)."""
    if not workflow_ref:
        return None
    return str(workflow_ref).partition("@")[0] or None


@dataclass(frozen=True)
class Binding:
    """Report field ``context.<section>.<key>`` must equal the credential's ``claim``."""

    fact: str
    section: str
    key: str
    claim: Any
    same: Callable[[Any, Any], bool] = _same
    strict: bool = True  # a contradiction is refused (403); otherwise the fact is merely not verified
    proves: bool = True  # agreeing verifies the fact (False: the field is checked, but is not what is stored)

    @property
    def field(self) -> str:
        return f"context.{self.section}.{self.key}"


def bindings(kind: str, claims: Mapping[str, Any]) -> List[Binding]:
    """Which report fields this kind of credential's claims pin down (claims that are absent pin nothing)."""
    if kind in (KIND_AZURE_DEVOPS, KIND_AZURE_DEVOPS_API):
        found = [Binding("repository", "repository", "uri", claims.get("rpo_uri"), _same_uri),
                 Binding("repository", "repository", "id", claims.get("rpo_id"), proves=False),
                 Binding("branch", "repository", "branch", claims.get("rpo_ref")),
                 Binding("commit", "repository", "commit", claims.get("rpo_ver"))]
    elif kind in (KIND_GITHUB, KIND_GITHUB_API):
        repository = claims.get("repository")
        found = [Binding("pipeline", "pipeline", "id", _workflow(claims.get("workflow_ref"))),
                 Binding("repository", "repository", "name", repository, proves=False),
                 Binding("repository", "repository", "id", claims.get("repository_id"), proves=False),
                 Binding("repository", "repository", "uri", repository, _names_repository),
                 Binding("branch", "repository", "branch", claims.get("ref")),
                 Binding("commit", "repository", "commit", claims.get("sha")),
                 # GITHUB_TRIGGERING_ACTOR (the requester) differs from actor on re-runs: never refused.
                 Binding("requester", "requester", "name", claims.get("actor"), strict=False),
                 Binding("requester", "requester", "id", claims.get("actor_id"), strict=False)]
    else:
        return []
    return [b for b in found if b.claim not in (None, "")]


@dataclass
class Assessment:
    """How a report's facts are known when this principal sends it."""

    conflict: Optional[str] = None  # why it is refused (403), naming the field
    evidence: Dict[str, str] = field(default_factory=dict)  # fact -> verified | claimed
    filled: Dict[Tuple[str, str], str] = field(default_factory=dict)  # (section, key) -> value from a claim


def _refused(conflict: str) -> Assessment:
    # Nothing in a refused report is bound (callers that store it anyway store claims).
    return Assessment(conflict=conflict, evidence=dict.fromkeys(FACTS, CLAIMED))


def assess(principal: Principal, report: Mapping[str, Any]) -> Assessment:
    """The evidence for each fact of ``report`` sent by ``principal`` (a pure function)."""
    conflict = _identity_conflict(principal, report)
    if conflict:
        return _refused(conflict)
    context = report.get("context") or {}
    result = Assessment(evidence={fact: CLAIMED for fact in FACTS})
    for fact in IDENTITY_BY_KIND.get(principal.kind, ()):
        result.evidence[fact] = VERIFIED  # checked by _identity_conflict above
    checked: Dict[str, bool] = {}
    for binding in bindings(principal.kind, principal.claims):
        reported = (context.get(binding.section) or {}).get(binding.key)
        if reported in (None, ""):
            # Missing from the report but named by the credential: the claim is the fact.
            if binding.key in FILLABLE and (binding.key != "uri" or binding.same is _same_uri):
                result.filled[(binding.section, binding.key)] = str(binding.claim)
                checked.setdefault(binding.fact, True)
            continue
        if binding.same(reported, binding.claim):
            if binding.proves:
                checked.setdefault(binding.fact, True)
        elif binding.strict:
            return _refused(f"{binding.field} is {reported!r} but the token was issued for {binding.claim!r}")
        else:
            checked[binding.fact] = False
    for fact, agrees in checked.items():
        result.evidence[fact] = VERIFIED if agrees else CLAIMED
    return result


def report_conflict(principal: Principal, report: Mapping[str, Any]) -> Optional[str]:
    """Why this principal may not submit this report, or None when it may."""
    return assess(principal, report).conflict


# -- the run's identity ------------------------------------------------------------------

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


def _identity_conflict(principal: Principal, report: Mapping[str, Any]) -> Optional[str]:
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
