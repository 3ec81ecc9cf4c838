"""The cluster inventory contract: what ``imagetrail k8s sync`` sends and the backend stores.

One set of models for both sides. The CLI builds them (``parsers.k8s_inventory.normalize`` for
a full inventory, ``client.k8s_watch`` for changed pods) and sends their JSON; the routes
``POST /v1/clusters/{cluster}/inventory`` and ``/changes`` validate the body into the same
models, and ``ingest.cloud`` stores them. A bound (a length, a count) is declared once, here,
so the CLI refuses what the backend would refuse, naming the field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from imagetrail.reference import is_digest

MAX_CHANGED_PODS = 5000  # pods changed, and pods removed, in one changes request
MAX_CONTAINERS_PER_POD = 1000
MAX_WARNINGS = 1000


class Exposure(BaseModel):
    """Why a container is reachable from outside the cluster (a Service, Ingress or HTTPRoute)."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)
    address: Optional[str] = Field(default=None, max_length=1024)


class Container(BaseModel):
    """One running container (main, init, native sidecar or ephemeral) and its owning workload."""

    model_config = ConfigDict(extra="forbid")
    namespace: str = Field(min_length=1, max_length=255)
    pod: str = Field(min_length=1, max_length=255)
    workload_kind: str = Field(min_length=1, max_length=64)
    workload_name: str = Field(min_length=1, max_length=255)
    container: str = Field(min_length=1, max_length=255)
    container_kind: Literal["container", "init", "sidecar", "ephemeral"]
    image: str = Field(min_length=1, max_length=1024)
    digest: Optional[str] = None
    digest_error: Optional[str] = Field(default=None, max_length=4000)
    exposure: List[Exposure] = Field(default_factory=list)
    owner_note: Optional[str] = Field(default=None, max_length=4000)

    @field_validator("digest")
    @classmethod
    def _digest(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not is_digest(value):
            raise ValueError(
                "must be sha256:<64 lower-case hex> (a manifest digest) or null with digest_error"
            )
        return value


class _Body(BaseModel):
    def to_dict(self) -> Dict[str, Any]:
        """The JSON object this model is sent as."""
        return self.model_dump(mode="json")

    def to_json(self, indent: Optional[int] = None) -> str:
        """The request body (compact unless ``indent``)."""
        return self.model_dump_json(indent=indent)


class Inventory(_Body):
    """The body of ``POST /v1/clusters/{cluster}/inventory``: every running container of the cluster."""

    model_config = ConfigDict(extra="forbid")
    cluster: str = Field(min_length=1, max_length=255)
    source: Literal["live", "file"]
    collected_at: Optional[datetime] = None
    pods: int = Field(ge=0)
    containers: List[Container]
    warnings: List[str] = Field(default_factory=list, max_length=MAX_WARNINGS)
    # An empty inventory for a cluster that had containers is refused unless this says it is meant.
    allow_empty: bool = False


class PodRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = Field(min_length=1, max_length=255)
    pod: str = Field(min_length=1, max_length=255)


class PodContainers(PodRef):
    """A pod's containers as they are now (the pod is replaced whole)."""

    containers: List[Container] = Field(max_length=MAX_CONTAINERS_PER_POD)

    @model_validator(mode="after")
    def _same_pod(self) -> "PodContainers":
        for index, container in enumerate(self.containers):
            if (container.namespace, container.pod) != (self.namespace, self.pod):
                raise ValueError(f"containers[{index}] belongs to {container.namespace}/{container.pod}, "
                                 f"not to the pod {self.namespace}/{self.pod} it is listed under")
        return self


class Changes(_Body):
    """The body of ``POST /v1/clusters/{cluster}/changes``: pods whose containers are now as given, pods gone.

    Each pod is replaced whole, so a batch sent twice (a retry after a lost answer) changes nothing more.
    """

    model_config = ConfigDict(extra="forbid")
    cluster: str = Field(min_length=1, max_length=255)
    collected_at: Optional[datetime] = None
    pods: List[PodContainers] = Field(default_factory=list, max_length=MAX_CHANGED_PODS)
    removed: List[PodRef] = Field(default_factory=list, max_length=MAX_CHANGED_PODS)


def describe(exc: ValidationError, limit: int = 5) -> str:
    """The first problems of a refused model, each with its field path (``containers[3].image: ...``)."""
    problems = []
    for error in exc.errors()[:limit]:
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
        problems.append(f"{path}: {error['msg']}")
    more = f" (and {exc.error_count() - limit} more)" if exc.error_count() > limit else ""
    return "; ".join(problems) + more
