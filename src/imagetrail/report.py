"""The collector report: what one CI job pushed, and where it ran.

This module is the contract between the collector (which runs on CI agents, on
Python 3.9+, with the standard library only) and the backend. Its JSON form is
documented by ``schemas/report-v1.schema.json``; the backend validates against the
same schema. Missing context values are ``None`` (JSON ``null``), never invented.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields, is_dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

SCHEMA_VERSION = "1.0"
SCHEMA_ID = "https://imagetrail.dev/schemas/report-v1.schema.json"

SYSTEM_AZURE_DEVOPS = "azure-devops"
SYSTEM_GITHUB = "github"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _to_json_obj(value: Any) -> Any:
    """Dataclass fields become camelCase keys; plain dict keys (labels) are kept as they are."""
    if is_dataclass(value):
        return {_camel(f.name): _to_json_obj(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {k: _to_json_obj(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_json_obj(v) for v in value]
    return value


@lru_cache(maxsize=1)
def _schema() -> Mapping[str, Any]:
    # Beside this module in the package and in the task folders alike; read only when a report is built.
    return json.loads((Path(__file__).parent / "schemas" / "report-v1.schema.json").read_text(encoding="utf-8"))


def _fit(value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` with every free-text string cut to the schema's ``maxLength`` (an ellipsis marks
    the cut), so a long pipeline or job name cannot make the backend refuse the whole report.
    Strings with a ``pattern`` (digests, references, times) are left alone: cutting one would
    only make it wrong, and the backend names the field instead."""
    if isinstance(value, str):
        limit = schema.get("maxLength")
        if limit is not None and "pattern" not in schema and len(value) > limit:
            return value[: max(0, limit - 1)] + "\u2026"
        return value
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        return {k: _fit(v, properties.get(k) or (extra if isinstance(extra, dict) else {})) for k, v in value.items()}
    if isinstance(value, list):
        items = schema.get("items")
        return [_fit(v, items if isinstance(items, dict) else {}) for v in value]
    return value


@dataclass
class Named:
    """An entity known by an id and a display name (project, pipeline, repository...)."""

    id: Optional[str] = None
    name: Optional[str] = None


@dataclass
class Run:
    id: Optional[str] = None
    number: Optional[str] = None
    attempt: Optional[int] = None
    url: Optional[str] = None
    reason: Optional[str] = None


@dataclass
class Job:
    id: Optional[str] = None
    name: Optional[str] = None
    attempt: Optional[int] = None
    stage: Optional[str] = None


@dataclass
class Repository:
    id: Optional[str] = None
    name: Optional[str] = None
    uri: Optional[str] = None
    type: Optional[str] = None
    branch: Optional[str] = None
    commit: Optional[str] = None


@dataclass
class Person:
    id: Optional[str] = None
    name: Optional[str] = None
    email: Optional[str] = None


@dataclass
class Agent:
    name: Optional[str] = None
    os: Optional[str] = None
    host_type: Optional[str] = None  # Azure DevOps: build | release; GitHub: github-hosted | self-hosted


@dataclass
class PipelineContext:
    """Where a job ran. Field names are system-neutral: on GitHub, project is the
    repository's full name and pipeline is the workflow."""

    system: str = SYSTEM_AZURE_DEVOPS
    server_url: Optional[str] = None
    organization: Named = field(default_factory=Named)
    project: Named = field(default_factory=Named)
    pipeline: Named = field(default_factory=Named)
    run: Run = field(default_factory=Run)
    job: Job = field(default_factory=Job)
    repository: Repository = field(default_factory=Repository)
    requester: Person = field(default_factory=Person)
    agent: Agent = field(default_factory=Agent)


@dataclass
class Platform:
    digest: str
    os: Optional[str] = None
    architecture: Optional[str] = None
    variant: Optional[str] = None


@dataclass
class Push:
    """One image reference pushed by the job."""

    reference: str  # as pushed, e.g. myregistry.azurecr.io/team/app:1.4
    registry: str
    repository: str
    tag: Optional[str]
    digest: Optional[str]  # pushed manifest digest, sha256:...; None only with digest_error set
    image_id: Optional[str] = None
    pushed_at: Optional[str] = None  # RFC 3339, from the daemon's event time
    labels: Dict[str, str] = field(default_factory=dict)  # OCI labels, org.opencontainers.image.*
    digest_error: Optional[str] = None  # why the digest could not be resolved
    media_type: Optional[str] = None
    platforms: List[Platform] = field(default_factory=list)  # per-platform manifests of an index


@dataclass
class CollectorInfo:
    name: str = "imagetrail"
    version: str = ""
    phase: str = "post-job"
    discovery: List[str] = field(default_factory=list)  # which sources covered the job (watcher, events)


@dataclass
class Report:
    context: PipelineContext
    pushes: List[Push]
    collector: CollectorInfo = field(default_factory=CollectorInfo)
    generated_at: Optional[str] = None
    warnings: List[str] = field(default_factory=list)
    schema_version: str = SCHEMA_VERSION

    @property
    def report_id(self) -> str:
        return compute_report_id(self.to_dict())

    def to_dict(self) -> Dict[str, Any]:
        body = _fit(_to_json_obj(self), _schema())
        body["reportId"] = compute_report_id(body)
        return body

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> "Report":
        """The typed report of a JSON body (camelCase keys, as ``to_dict`` writes them).

        Meant for a body the schema already accepted: it converts and does not validate (the
        backend validates first, so a bad body is refused naming its field). Values are taken
        as they are, neither cut nor cleaned, and ``reportId`` is not kept (``report_id``
        recomputes it). An optional section that is absent gets its empty default.
        """
        ctx = body["context"]
        collector = body.get("collector")
        return cls(
            context=PipelineContext(
                system=ctx["system"],
                server_url=ctx.get("serverUrl"),
                organization=_named(ctx.get("organization")),
                project=_named(ctx.get("project")),
                pipeline=_named(ctx.get("pipeline")),
                run=_from(Run, ctx.get("run"), _RUN_KEYS),
                job=_from(Job, ctx.get("job"), _JOB_KEYS),
                repository=_from(Repository, ctx.get("repository"), _REPOSITORY_KEYS),
                requester=_from(Person, ctx.get("requester"), _PERSON_KEYS),
                agent=_from(Agent, ctx.get("agent"), _AGENT_KEYS),
            ),
            pushes=[_push(push) for push in body["pushes"]],
            collector=CollectorInfo(
                name=collector.get("name", "imagetrail"), version=collector.get("version", ""),
                phase=collector.get("phase", "post-job"), discovery=list(collector.get("discovery") or []),
            ) if collector else CollectorInfo(),
            generated_at=body.get("generatedAt"),
            warnings=list(body.get("warnings") or []),
            schema_version=body.get("schemaVersion", SCHEMA_VERSION),
        )


# (JSON key, field name) of each flat section, in field order: read with one .get per field.
_RUN_KEYS = (("id", "id"), ("number", "number"), ("attempt", "attempt"), ("url", "url"), ("reason", "reason"))
_JOB_KEYS = (("id", "id"), ("name", "name"), ("attempt", "attempt"), ("stage", "stage"))
_REPOSITORY_KEYS = (("id", "id"), ("name", "name"), ("uri", "uri"), ("type", "type"), ("branch", "branch"),
                    ("commit", "commit"))
_PERSON_KEYS = (("id", "id"), ("name", "name"), ("email", "email"))
_AGENT_KEYS = (("name", "name"), ("os", "os"), ("hostType", "host_type"))


def _from(cls: Any, data: Optional[Mapping[str, Any]], keys: Any) -> Any:
    if not data:
        return cls()
    return cls(**{name: data.get(key) for key, name in keys})


def _named(data: Optional[Mapping[str, Any]]) -> Named:
    return Named(data.get("id"), data.get("name")) if data else Named()


def _push(data: Mapping[str, Any]) -> Push:
    return Push(
        reference=data["reference"], registry=data["registry"], repository=data["repository"],
        tag=data.get("tag"), digest=data.get("digest"), image_id=data.get("imageId"),
        pushed_at=data.get("pushedAt"), labels=dict(data.get("labels") or {}),
        digest_error=data.get("digestError"), media_type=data.get("mediaType"),
        platforms=[Platform(p["digest"], p.get("os"), p.get("architecture"), p.get("variant"))
                   for p in data.get("platforms") or []],
    )


def compute_report_id(report: Dict[str, Any]) -> str:
    """Deterministic id: the same job attempt reporting the same pushes gets the same id,
    so a resent or reconciled report is recognised. Times and warnings are left out on
    purpose: a retry a minute later is the same report."""
    ctx = report.get("context") or {}
    key = {
        "system": ctx.get("system"),
        "organization": (ctx.get("organization") or {}).get("id") or (ctx.get("organization") or {}).get("name"),
        "project": (ctx.get("project") or {}).get("id") or (ctx.get("project") or {}).get("name"),
        "pipeline": (ctx.get("pipeline") or {}).get("id"),
        "run": (ctx.get("run") or {}).get("id"),
        "runAttempt": (ctx.get("run") or {}).get("attempt"),
        "job": (ctx.get("job") or {}).get("id") or (ctx.get("job") or {}).get("name"),
        "jobAttempt": (ctx.get("job") or {}).get("attempt"),
        # One tag pushed twice may be resolved once and not the other time: None sorts first.
        "pushes": sorted(
            ([p.get("reference"), p.get("digest")] for p in (report.get("pushes") or [])),
            key=lambda pair: [str(part) if part is not None else "" for part in pair],
        ),
    }
    return "sha256:" + hashlib.sha256(_CANONICAL_JSON.encode(key).encode("utf-8")).hexdigest()


# json.dumps(key, sort_keys=True, separators=(",", ":"), default=str), without building the encoder per call
# (half its time; the server checks every report's id)
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)
