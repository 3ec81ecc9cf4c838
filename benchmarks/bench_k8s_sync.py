"""``k8s sync`` of a 50,000-pod cluster: normalise + POST + replace, against a target of 30 s.

Generates kubectl-style JSON for N pods (with ReplicaSets and LoadBalancer Services), then times
normalising it, and the API call that validates it and replaces the cluster's rows in one
transaction (the real app, in-process, on PostgreSQL). The floor is json.loads of the same input,
measured in the same run. Writes benchmarks/results/bench_k8s_sync.md.

    python3 benchmarks/bench_k8s_sync.py [--pods 50000] [--database-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import sqlalchemy as sa  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def cluster_json(pods: int) -> str:
    items = []
    for n in range(pods):
        namespace, app = f"ns{n % 1000}", f"app{n % 5000}"
        items.append(
            {
                "kind": "Pod",
                "apiVersion": "v1",
                "metadata": {
                    "name": f"{app}-7d9f-{n}",
                    "namespace": namespace,
                    "labels": {"app": app, "pod-template-hash": "7d9f"},
                    "ownerReferences": [{"kind": "ReplicaSet", "name": f"{app}-7d9f", "controller": True}],
                },
                "spec": {
                    "containers": [{"name": "main", "image": f"acr.example.io/team/{app}:1"}],
                    "initContainers": [{"name": "init", "image": "acr.example.io/tools/init:1"}]
                    if n % 4 == 0
                    else [],
                },
                "status": {
                    "phase": "Running",
                    "containerStatuses": [
                        {"name": "main", "imageID": f"acr.example.io/team/{app}@sha256:{n:064x}"}
                    ],
                    "initContainerStatuses": [{"name": "init", "imageID": "sha256:" + "1" * 64}]
                    if n % 4 == 0
                    else [],
                },
            }
        )
    for n in range(5000):
        namespace, app = f"ns{n % 1000}", f"app{n}"
        items.append(
            {
                "kind": "ReplicaSet",
                "apiVersion": "apps/v1",
                "metadata": {
                    "name": f"{app}-7d9f",
                    "namespace": namespace,
                    "ownerReferences": [{"kind": "Deployment", "name": app, "controller": True}],
                },
            }
        )
        if n % 3 == 0:
            items.append(
                {
                    "kind": "Service",
                    "apiVersion": "v1",
                    "metadata": {"name": app, "namespace": namespace},
                    "spec": {"type": "LoadBalancer", "selector": {"app": app}},
                    "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}},
                }
            )
    return json.dumps({"kind": "List", "apiVersion": "v1", "items": items})


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pods", type=int, default=50_000)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    args = parser.parse_args()
    from fastapi.testclient import TestClient

    from imagetrail.auth import Principal
    from imagetrail.auth.dependencies import require_ingest
    from imagetrail.parsers.k8s_inventory import load_objects, normalize
    from imagetrail.server.app import create_app
    from imagetrail.settings import Settings
    from imagetrail.store.migrate import upgrade

    text = cluster_json(args.pods)
    gc_time = GcTime()
    with gc_time.step() as floor_gc:
        started = time.perf_counter()
        json.loads(text)
        floor = time.perf_counter() - started
    with gc_time.step() as normalise_gc:
        started = time.perf_counter()
        inventory = normalize(load_objects(text, "cluster.json"), "bench", "file")
        body = inventory.to_json()
        normalise = time.perf_counter() - started

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(args.database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        app = create_app(Settings(database_url=f"{args.database_url}?options=-csearch_path%3D{schema}"))
        upgrade(app.state.engine)
        app.dependency_overrides[require_ingest] = lambda: Principal(
            kind="api-key", subject="bench", scopes=frozenset({"admin"}), organizations=None
        )
        timings, post_gc = [], []
        with TestClient(app) as client:
            for _ in range(2):  # the second sync also deletes the first one's rows
                with gc_time.step() as step_gc:
                    started = time.perf_counter()
                    response = client.post(
                        "/v1/clusters/bench/inventory",
                        content=body,
                        headers={"Content-Type": "application/json"},
                    )
                    timings.append(time.perf_counter() - started)
                post_gc.append(step_gc)
                assert response.status_code == 200, response.text[:300]
        app.state.engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    total = normalise + max(timings)
    verdict = "met" if total < 30 else "MISSED"
    lines = [
        f"# bench_k8s_sync ({args.pods:,} pods)",
        "",
        f"{len(inventory.containers):,} containers, {len(body) / 1e6:.1f} MB inventory body; PostgreSQL.",
        "",
        "| step | seconds | / floor | full GC passes (seconds in GC) |",
        "|---|---|---|---|",
        f"| floor: json.loads of the kubectl output | {floor:.2f} | 1x | {floor_gc} |",
        f"| normalise (load + owners + exposure + encode) | {normalise:.2f} | {normalise / floor:.1f}x "
        f"| {normalise_gc} |",
        f"| POST + validate + replace (first sync) | {timings[0]:.2f} | {timings[0] / floor:.1f}x "
        f"| {post_gc[0]} |",
        f"| POST + validate + replace (re-sync, deletes the old view) | {timings[1]:.2f} | "
        f"{timings[1] / floor:.1f}x | {post_gc[1]} |",
        f"| total (normalise + slower POST) | {total:.2f} | target < 30 s: {verdict} | |",
    ]
    text_out = "\n".join(lines) + "\n"
    print(text_out)
    (ROOT / "benchmarks" / "results" / "bench_k8s_sync.md").write_text(text_out)
    return 0


class GcStep:
    def __init__(self) -> None:
        self.full_passes = 0
        self.seconds = 0.0

    def __str__(self) -> str:
        return f"{self.full_passes} ({self.seconds:.2f})"


class GcTime:
    """Time spent in the cyclic garbage collector (all generations) and its full passes, per step."""

    def __init__(self) -> None:
        self.current: Optional[GcStep] = None
        self.started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        elif self.current is not None:
            self.current.seconds += time.perf_counter() - self.started
            self.current.full_passes += info["generation"] == 2

    @contextmanager
    def step(self) -> Iterator[GcStep]:
        self.current = GcStep()
        try:
            yield self.current
        finally:
            self.current = None


if __name__ == "__main__":
    raise SystemExit(main())
