"""The explorer's filter model and paging bounds: the one definition the API parameters, the CLI options and
the web form are built from.

Each filter is one field of ``ExplorerFilters``: its type and bounds (pydantic), its description, and a
``Surface`` naming how people meet it (CLI flag, form label and widget). ``api/cloud.py``, ``client/query.py``
and ``web/explorer_view.py`` loop over ``FILTER_FIELDS``: adding a filter is one edit here (plus its SQL in
the query modules).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timezone
from typing import Annotated, Any, Dict, List, Literal, Optional, Tuple, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.fields import FieldInfo

MAX_PAGE_SIZE = 500
# Deeper pages are refused: page x page_size must stay a small OFFSET (and fit a 64-bit integer).
MAX_PAGE = 100_000

# Sort key -> how the web explorer names it. The first key is the default.
SORT_LABELS: Dict[str, str] = {
    "-severity": "severity (worst first)",
    "severity": "severity (least first)",
    "cluster": "cluster",
    "namespace": "namespace",
    "workload": "workload",
    "image": "image",
    "digest": "digest",
}
SortKey = Literal["-severity", "severity", "cluster", "namespace", "workload", "image", "digest"]
SORT_KEYS: Tuple[str, ...] = get_args(SortKey)
DEFAULT_SORT = SORT_KEYS[0]
assert tuple(SORT_LABELS) == SORT_KEYS
SEVERITIES = ("low", "medium", "high", "critical")

# Widgets: "text", "date", "choice" (a select of the Literal's values), "flag" (checkbox / --flag for a
# default-False bool) and "tristate" (any / yes / no: a select, and a --flag / --negative pair).
Widget = Literal["text", "date", "choice", "flag", "tristate"]


@dataclass(frozen=True)
class Surface:
    """How a filter appears outside the model: the web form and the command line."""

    label: str  # the form label
    widget: Widget
    help: str = ""  # CLI help; the field description when empty
    placeholder: str = ""
    # tristate only: the labels of any / true / false in the form, and the CLI flag that means false
    choices: Tuple[str, str, str] = ("any", "yes", "no")
    negative_flag: str = ""


def _time(value: Any) -> Any:
    """A bare date (2024-05-31) is the start of that day, UTC; a time without an offset is UTC."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError("expected a date like 2024-05-31 or an ISO 8601 time like 2024-05-31T10:00Z") from None
        if len(text) == 10:
            parsed = datetime.combine(parsed.date(), time.min)
        value = parsed
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


class ExplorerFilters(BaseModel):
    """Filters, combined with AND (like Defender's Cloud Security Explorer conditions)."""

    model_config = ConfigDict(extra="forbid")

    exposed: Annotated[Optional[bool], Field(
        description="true: only containers reachable from the internet; false: only internal ones"),
        Surface("Internet exposure", "tristate", help="only containers reachable from the internet",
                choices=("any", "exposed", "not exposed"), negative_flag="--not-exposed")] = None
    running: Annotated[Optional[bool], Field(
        description="true: only images a cluster runs; false: only pushed images no cluster runs; unset: both"),
        Surface("Running", "tristate", help="only images a cluster runs (default: running or not)",
                choices=("running or not", "running in a cluster", "pushed, not running"),
                negative_flag="--not-running")] = None
    min_severity: Annotated[Optional[Literal["low", "medium", "high", "critical"]], Field(
        description="only images with a finding of this severity or worse: low | medium | high | critical"),
        Surface("Minimum severity", "choice")] = None
    cve: Annotated[Optional[str], Field(
        max_length=64, description="a vulnerability id, e.g. CVE-2021-36159 or GHSA-..."),
        Surface("CVE", "text", placeholder="CVE-2023-5363")] = None
    fix_available: Annotated[bool, Field(description="only findings with a fixed version"),
                             Surface("Fix available", "flag")] = False
    untraced_push: Annotated[bool, Field(
        description="only images a registry reported pushed that no report, label or provenance explains"),
        Surface("Untraced pushed images", "flag")] = False
    cluster: Annotated[Optional[str], Field(max_length=253, description="cluster name"),
                       Surface("Cluster", "text")] = None
    namespace: Annotated[Optional[str], Field(max_length=253, description="Kubernetes namespace"),
                         Surface("Namespace", "text")] = None
    registry: Annotated[Optional[str], Field(max_length=255, description="e.g. myregistry.azurecr.io or docker.io"),
                        Surface("Registry", "text", placeholder="myregistry.azurecr.io")] = None
    repository: Annotated[Optional[str], Field(
        max_length=512, description="image repository, e.g. team/app (Docker Hub: library/nginx)"),
        Surface("Repository", "text", placeholder="team/app")] = None
    org: Annotated[Optional[str], Field(
        max_length=255, description="Azure DevOps organisation (or GitHub owner) of the run that pushed the image"),
        Surface("Organisation", "text")] = None
    project: Annotated[Optional[str], Field(max_length=255, description="project of the run that pushed the image"),
                       Surface("Project", "text")] = None
    pipeline: Annotated[Optional[str], Field(max_length=512, description="pipeline name or definition id"),
                        Surface("Pipeline", "text")] = None
    pushed_after: Annotated[Optional[datetime], Field(
        description="ISO 8601 date or time, e.g. 2024-05-01 or 2024-05-01T10:00Z (no offset: UTC)"),
        Surface("Pushed after", "date")] = None
    pushed_before: Annotated[Optional[datetime], Field(
        description="ISO 8601 date or time (no offset: UTC)"), Surface("Pushed before", "date")] = None
    # Rows running one of these digests (the web explorer's selections); no Surface: not a query parameter.
    digests: Optional[List[str]] = Field(default=None, max_length=MAX_PAGE_SIZE)

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value):
        # PostgreSQL text cannot hold NUL: refused here with the field named, not as a database error.
        texts = value if isinstance(value, list) else [value]
        if any(isinstance(text, str) and "\x00" in text for text in texts):
            raise ValueError("must not contain a NUL character")
        return value

    @field_validator("min_severity", mode="before")
    @classmethod
    def _lower(cls, value):
        return (value.strip().lower() or None) if isinstance(value, str) else value

    @field_validator("cve", mode="before")
    @classmethod
    def _upper(cls, value):
        return value.strip().upper() if isinstance(value, str) and value.strip() else None

    @field_validator("cluster", "namespace", "registry", "repository", "org", "project", "pipeline", mode="before")
    @classmethod
    def _blank_is_unset(cls, value):
        return (value.strip() or None) if isinstance(value, str) else value

    @field_validator("pushed_after", "pushed_before", mode="before")
    @classmethod
    def _times(cls, value):
        return _time(value)

    def trail_filtered(self) -> bool:
        return any(
            v is not None
            for v in (self.org, self.project, self.pipeline, self.pushed_after, self.pushed_before)
        )

    def container_filtered(self) -> bool:
        """Filters only a running container can match (an image no cluster runs is never exposed)."""
        return bool(self.exposed or self.cluster or self.namespace or self.untraced_push)

    def vulnerability_filtered(self) -> bool:
        return self.min_severity is not None or self.cve is not None or self.fix_available

    def query_params(self) -> Dict[str, str]:
        """The set filters as query-string parameters of ``GET /v1/query`` (booleans as true / false)."""
        params: Dict[str, str] = {}
        for spec in FILTER_FIELDS:
            value = getattr(self, spec.name)
            if value is None or value is False and spec.surface.widget == "flag":
                continue
            if isinstance(value, bool):
                params[spec.name] = "true" if value else "false"
            elif isinstance(value, datetime):
                params[spec.name] = value.isoformat()
            else:
                params[spec.name] = str(value)
        return params


@dataclass(frozen=True)
class FilterField:
    """One filter as the API, the CLI and the web form see it."""

    name: str
    info: FieldInfo
    surface: Surface

    @property
    def description(self) -> str:
        return self.info.description or ""

    @property
    def max_length(self) -> Optional[int]:
        return next((m.max_length for m in self.info.metadata if hasattr(m, "max_length")), None)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def choices(self) -> Tuple[str, ...]:
        """A choice field's values (the Literal inside the Optional)."""
        for arg in get_args(self.info.annotation) or ():
            if get_args(arg) and all(isinstance(a, str) for a in get_args(arg)):
                return get_args(arg)
        return ()

    @property
    def default(self) -> Any:
        return self.info.default


def _filter_fields() -> Tuple[FilterField, ...]:
    fields = []
    for name, info in ExplorerFilters.model_fields.items():
        surface = next((m for m in info.metadata if isinstance(m, Surface)), None)
        if surface is not None:
            fields.append(FilterField(name, info, surface))
    return tuple(fields)


FILTER_FIELDS: Tuple[FilterField, ...] = _filter_fields()
FILTER_NAMES: Tuple[str, ...] = tuple(f.name for f in FILTER_FIELDS)


def check_paging(page: int, page_size: int) -> None:
    if not 1 <= page <= MAX_PAGE:
        raise ValueError(f"page must be between 1 and {MAX_PAGE}, not {page}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")
