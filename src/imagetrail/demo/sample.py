"""The demo map: two organisations' pipelines, their pushes, a cluster running them, and real scans.

The scan reports in ``data/`` are public Trivy and Grype outputs (see data/SOURCES.md); their digests
are the ones the invented pipelines push and the invented cluster runs, so every join the explorer makes
(digest → run → commit → owner, index → platform manifest, exposure, coverage gaps) has something to show.
Everything is loaded through the product's own write paths, exactly as the API would store it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import Dict, List, Optional

from sqlalchemy.orm import Session, sessionmaker

from imagetrail import report as r
from imagetrail.auth import SCOPE_INGEST, Principal
from imagetrail.ingest import cloud as store
from imagetrail.ingest.reports import ingest_report
from imagetrail.ingest.seeding import holds_runs_or_clusters
from imagetrail.parsers.k8s_inventory import normalize
from imagetrail.parsers.scans import parse_report
from imagetrail.reference import parse_reference
from imagetrail.store.db import transaction

CLUSTER = "demo-aks"
# The digests of the public scan reports in data/.
ALPINE = "sha256:451eee8bedcb2f029756dc3e9d73bab0e7943c1ac55cff3a4861c52a0fdd3e98"
CLAMAV = "sha256:02b700f189e190e284a251c575aa470cf9b5a0dd1a51a341383d1cf009d0e395"
RUBY_INDEX = "sha256:3c9afb4f188827ea1062ec3b8acea32893236a0d7df31e0498df93486cff0978"
RUBY_ARM64 = "sha256:86abe662dfa3746038eea6b0db91092b0767d78b8b8938a343d614cd1579adc2"
NGINX = "sha256:" + "6d" * 32  # runs in the cluster, pushed by no pipeline: a coverage gap
SCANS = (
    "trivy-action_alpine-3.10_image-report.json",
    "trivysummary_acp-clamav-http-0.4.0_image-report.json",
    "grype_chainguard-ruby_image.json",
)
# The demo loads through the ingest path as a collector with an API key would.
_LOADER = Principal(kind="api-key", subject="key:demo", scopes=frozenset({SCOPE_INGEST}), organizations=None)


@dataclass(frozen=True)
class DemoPush:
    reference: str
    digest: str
    platforms: tuple = ()


@dataclass(frozen=True)
class DemoRun:
    organization: str
    project: str
    pipeline: str
    run_id: str
    commit: str
    requester: str
    email: str
    pushes: tuple
    hours_ago: int


RUNS = (
    DemoRun("contoso", "shop", "shop-web-ci", "1201", "3f2a9c1d" + "0" * 32, "Alice Martin", "alice@contoso.example",
            (DemoPush("contoso.azurecr.io/shop/web:3.10", ALPINE),), 50),
    DemoRun("contoso", "shop", "shop-worker-ci", "1202", "77e1b0aa" + "1" * 32, "Alice Martin",
            "alice@contoso.example",
            (DemoPush("contoso.azurecr.io/shop/worker:3.0", RUBY_INDEX,
                      (r.Platform(digest=RUBY_ARM64, os="linux", architecture="arm64"),)),), 30),
    DemoRun("fabrikam", "payments", "clamav-ci", "88", "c1a5e7f0" + "2" * 32, "Bob Okafor", "bob@fabrikam.example",
            (DemoPush("fabrikam.azurecr.io/payments/clamav:0.4.0", CLAMAV),), 20),
)


def _report(run: DemoRun, now: datetime) -> dict:
    pushed_at = (now - timedelta(hours=run.hours_ago)).isoformat().replace("+00:00", "Z")
    org_url = f"https://dev.azure.com/{run.organization}/"
    context = r.PipelineContext(
        system=r.SYSTEM_AZURE_DEVOPS,
        server_url=org_url,
        organization=r.Named(id=f"{run.organization}-0000-demo", name=run.organization),
        project=r.Named(id=f"{run.project}-0000-demo", name=run.project),
        pipeline=r.Named(id=str(zlib.crc32(run.pipeline.encode()) % 1000), name=run.pipeline),
        run=r.Run(id=run.run_id, number=f"2026.{run.run_id}", attempt=1,
                  url=f"{org_url}{run.project}/_build/results?buildId={run.run_id}"),
        job=r.Job(id="build", name="Build and push", attempt=1),
        repository=r.Repository(id=f"{run.project}-repo", name=run.pipeline.replace("-ci", ""),
                                uri=f"{org_url}{run.project}/_git/{run.pipeline.replace('-ci', '')}",
                                type="TfsGit", branch="refs/heads/main", commit=run.commit),
        requester=r.Person(id=run.email, name=run.requester, email=run.email),
    )
    pushes = []
    for push in run.pushes:
        name = parse_reference(push.reference)
        pushes.append(r.Push(reference=push.reference, registry=name.registry, repository=name.repository,
                             tag=name.tag, digest=push.digest, pushed_at=pushed_at, platforms=list(push.platforms)))
    return r.Report(context=context, pushes=pushes, generated_at=pushed_at).to_dict()


def _pod(namespace: str, name: str, image: str, running: str, labels: Dict[str, str], owner: str) -> dict:
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels,
                     "ownerReferences": [{"kind": "ReplicaSet", "name": owner, "controller": True}]},
        "spec": {"containers": [{"name": name.split("-")[0], "image": image}]},
        "status": {"phase": "Running", "containerStatuses": [
            {"name": name.split("-")[0], "image": image, "imageID": f"{image.rsplit(':', 1)[0]}@{running}"}]},
    }


def _replica_set(namespace: str, name: str, deployment: str) -> dict:
    return {"kind": "ReplicaSet", "metadata": {"name": name, "namespace": namespace, "ownerReferences": [
        {"kind": "Deployment", "name": deployment, "controller": True}]}}


def cluster_objects() -> List[dict]:
    """The cluster as ``kubectl get pods,services,ingresses,replicasets -A -o json`` would list it."""
    return [
        _replica_set("shop", "web-5d8f7", "web"),
        _replica_set("shop", "worker-6c4b2", "worker"),
        _replica_set("payments", "clamav-7f9d1", "clamav"),
        _replica_set("edge", "nginx-84c6d", "nginx"),
        *[_pod("shop", f"web-5d8f7-{i}", "contoso.azurecr.io/shop/web:3.10", ALPINE, {"app": "web"}, "web-5d8f7")
          for i in ("a1", "b2")],
        _pod("shop", "worker-6c4b2-c3", "contoso.azurecr.io/shop/worker:3.0", RUBY_ARM64, {"app": "worker"},
             "worker-6c4b2"),
        _pod("payments", "clamav-7f9d1-d4", "fabrikam.azurecr.io/payments/clamav:0.4.0", CLAMAV, {"app": "clamav"},
             "clamav-7f9d1"),
        _pod("edge", "nginx-84c6d-e5", "docker.io/library/nginx:1.25", NGINX, {"app": "nginx"}, "nginx-84c6d"),
        {"kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
         "spec": {"type": "LoadBalancer", "selector": {"app": "web"}},
         "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.20"}]}}},
        {"kind": "Service", "metadata": {"name": "clamav", "namespace": "payments"},
         "spec": {"type": "ClusterIP", "selector": {"app": "clamav"}}},
        {"kind": "Ingress", "metadata": {"name": "scan", "namespace": "payments"},
         "spec": {"rules": [{"host": "scan.fabrikam.example", "http": {"paths": [
             {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "clamav", "port": {"number": 80}}}}]}}]},
         "status": {"loadBalancer": {"ingress": [{"hostname": "scan.fabrikam.example"}]}}},
        {"kind": "Service", "metadata": {"name": "nginx", "namespace": "edge"},
         "spec": {"type": "NodePort", "selector": {"app": "nginx"}, "ports": [{"port": 80, "nodePort": 30080}]}},
    ]


@dataclass
class Loaded:
    reports: int
    containers: int
    exposed: int
    scans: int


def is_empty(session: Session) -> bool:
    return not holds_runs_or_clusters(session)


def load(sessions: sessionmaker, now: Optional[datetime] = None) -> Loaded:
    """Load the demo map into a migrated database (which should be empty: nothing is replaced but the cluster)."""
    now = now or datetime.now(timezone.utc)
    for run in RUNS:
        ingest_report(sessions, _report(run, now), _LOADER)
    inventory = normalize(cluster_objects(), CLUSTER, "file", now.isoformat())
    data = resources.files("imagetrail.demo") / "data"
    with transaction(sessions) as session:
        result = store.replace_inventory(session, store.InventoryIn.model_validate(inventory.to_dict()), now)
        for name in SCANS:
            store.ingest_scan(session, parse_report((data / name).read_bytes(), name), name, now)
    return Loaded(reports=len(RUNS), containers=result.containers, exposed=result.exposed, scans=len(SCANS))
