"""The image trail page's facts, and the graph drawn from them.

``TrailFacts`` is what the page shows, both as the SVG graph and as tables: the running
workloads (with exposure), the image (its references, index and platform digests), each
push with its pipeline run, repository and commit, and owner. ``load_trail`` fills it from
the backend's trace function and the cloud tables, in-process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, List, Optional, Tuple

from imagetrail.reference import is_digest  # noqa: F401 (routes check digests through this module)
from imagetrail.web.graph import Edge, Node

LAYER_WORKLOAD, LAYER_IMAGE, LAYER_RELATED, LAYER_PUSH, LAYER_RUN, LAYER_COMMIT, LAYER_OWNER = range(7)


@dataclass
class WorkloadFact:
    cluster: str
    namespace: str
    kind: str
    name: str
    container: str
    digest: Optional[str]
    exposed: bool
    exposure: List[str] = field(default_factory=list)


@dataclass
class PushFact:
    reference: str
    digest: str
    pushed_at: Optional[datetime]
    organization: str
    project: str
    pipeline: str
    run_id: str
    run_number: Optional[str]
    run_url: Optional[str]
    job: Optional[str]
    repository: Optional[str]
    repository_url: Optional[str]
    branch: Optional[str]
    commit: Optional[str]
    commit_url: Optional[str]
    owner_name: Optional[str]
    owner_email: Optional[str]
    owner_source: Optional[str] = None  # codeowners | commit-author | team-mapping | requester
    report_id: Optional[str] = None
    received_at: Optional[datetime] = None
    identity_kind: Optional[str] = None
    facts: Dict[str, str] = field(default_factory=dict)  # fact -> verified | claimed | disputed
    competing: Dict[str, List[str]] = field(default_factory=dict)  # disputed fact -> "value (who)" lines
    registry_events: List[Any] = field(default_factory=list)  # the registry's word on this push (second source)


@dataclass
class RelatedDigest:
    digest: str
    relation: str  # "index" (lists this image) or "platform" (listed by this image)
    platform: Optional[str] = None


@dataclass
class VulnerabilityFact:
    critical: int
    high: int
    medium: int
    low: int
    top: List[Dict[str, Optional[str]]]
    scanner: Optional[str]
    scanned_at: Optional[datetime]


@dataclass
class TrailFacts:
    digest: str
    references: List[str] = field(default_factory=list)
    related: List[RelatedDigest] = field(default_factory=list)
    pushes: List[PushFact] = field(default_factory=list)
    workloads: List[WorkloadFact] = field(default_factory=list)
    vulnerabilities: Optional[VulnerabilityFact] = None
    more_pushes: bool = False  # the trail API has older pushes than this first page
    # Registry side (imagetrail.views.registry): pushes only a registry reported, and the image's claims.
    registry_pushes: List[Any] = field(default_factory=list)
    claims: List[Any] = field(default_factory=list)
    # Nothing here the reader may see, but pushes of organisations they may not read exist (never which).
    hidden_by_permissions: bool = False

    @property
    def found(self) -> bool:
        return bool(self.pushes or self.workloads or self.registry_pushes or self.claims)


def short_digest(digest: str) -> str:
    return digest[:19] + "…" if len(digest) > 20 else digest


def short_repository(uri: Optional[str]) -> str:
    """The last two path parts of a clone URL: enough to recognise it in a box."""
    if not uri:
        return "repository unknown"
    parts = [p for p in uri.rstrip("/").split("/") if p and p != "_git"]
    return "/".join(parts[-2:]) if len(parts) >= 2 else uri


def _tag_of(reference: str) -> str:
    """ ":1.4" for registry/team/app:1.4, the last path part when there is no tag."""
    last = reference.rsplit("/", 1)[-1]
    return ":" + last.split(":", 1)[1] if ":" in last else last


def _when(value: Optional[datetime]) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "time unknown"


def build_graph(facts: TrailFacts, image_href) -> Tuple[List[Node], List[Edge]]:
    """Nodes and edges, left to right: workload → image → (index / platform) → push → run → commit → owner."""
    nodes: Dict[str, Node] = {}
    edges: List[Edge] = []

    def add(node: Node) -> str:
        nodes.setdefault(node.id, node)
        return node.id

    image_id = add(
        Node(
            f"image:{facts.digest}",
            LAYER_IMAGE,
            "image",
            "Image " + facts.digest[7:19],
            lines=facts.references[:3]
            + ([f"+{len(facts.references) - 3} more references"] if len(facts.references) > 3 else []),
        )
    )
    for workload in facts.workloads:
        badge = "internet-exposed" if workload.exposed else None
        wid = add(
            Node(
                f"workload:{workload.cluster}/{workload.namespace}/{workload.name}",
                LAYER_WORKLOAD,
                "workload",
                f"{workload.namespace}/{workload.name}",
                lines=[f"{workload.kind} · {workload.cluster}"] + workload.exposure[:1],
                badge=badge,
            )
        )
        edges.append(Edge(wid, image_id))
    related_ids: Dict[str, str] = {facts.digest: image_id}
    for item in facts.related:
        title = ("Index " if item.relation == "index" else "Platform ") + item.digest[7:19]
        rid = add(
            Node(
                f"image:{item.digest}",
                LAYER_RELATED,
                "index" if item.relation == "index" else "platform",
                title,
                lines=[item.platform] if item.platform else [],
                href=image_href(item.digest),
            )
        )
        related_ids[item.digest] = rid
        edges.append(Edge(image_id, rid))
    for push in facts.pushes:
        push_id = add(
            Node(
                f"push:{push.reference}@{push.digest}:{push.run_id}",
                LAYER_PUSH,
                "push",
                "Push " + _tag_of(push.reference),
                lines=[push.reference, _when(push.pushed_at)],
            )
        )
        edges.append(Edge(related_ids.get(push.digest, image_id), push_id))
        run_id = add(
            Node(
                f"run:{push.organization}/{push.project}/{push.pipeline}/{push.run_id}",
                LAYER_RUN,
                "run",
                f"Run #{push.run_number or push.run_id}",
                lines=[push.pipeline, f"{push.organization}/{push.project}"]
                + ([f"job {push.job}"] if push.job else []),
                href=push.run_url,
            )
        )
        edges.append(Edge(push_id, run_id))
        commit_label = push.commit[:12] if push.commit else "commit unknown"
        commit_id = add(
            Node(
                f"commit:{push.repository_url or push.repository}@{push.commit}",
                LAYER_COMMIT,
                "commit",
                f"Commit {commit_label}",
                lines=[short_repository(push.repository_url or push.repository)]
                + ([push.branch] if push.branch else []),
                href=push.commit_url,
            )
        )
        edges.append(Edge(run_id, commit_id))
        owner_key = push.owner_email or push.owner_name or "unknown"
        owner_id = add(
            Node(
                f"owner:{owner_key}",
                LAYER_OWNER,
                "owner",
                "Owner",
                lines=[push.owner_name or "unknown"]
                + ([push.owner_email] if push.owner_email else [])
                + ([f"from {push.owner_source}"] if push.owner_source else []),
                href=f"mailto:{push.owner_email}" if push.owner_email else None,
            )
        )
        edges.append(Edge(commit_id, owner_id))
    unique_edges = list({(e.source, e.target): e for e in edges}.values())
    return list(nodes.values()), unique_edges


# --- loading ------------------------------------------------------------------------------------

def describe(facts: TrailFacts) -> str:
    """A one-paragraph text alternative for the graph (screen readers read it with the SVG)."""
    parts = [f"Image {facts.digest}."]
    if facts.workloads:
        exposed = sum(1 for w in facts.workloads if w.exposed)
        parts.append(f"Runs in {len(facts.workloads)} workload(s), {exposed} exposed to the internet.")
    for push in facts.pushes:
        parts.append(
            f"Pushed as {push.reference} by run {push.run_number or push.run_id} of pipeline "
            f"{push.pipeline} ({push.organization}/{push.project}) from commit "
            f"{push.commit or 'unknown'}; owner {push.owner_name or 'unknown'}."
        )
    return " ".join(parts)


def load_trail(session, principal, digest: str, settings=None) -> TrailFacts:
    from imagetrail.web import trail_source

    return trail_source.load(session, principal, digest, settings)
