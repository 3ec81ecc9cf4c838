"""``k8s sync`` of a 50,000-pod cluster: normalise + POST + replace, against a target of 30 s.

Generates kubectl-style JSON for N pods (with ReplicaSets and LoadBalancer Services), then times
normalising it, and the API call that validates it and replaces the cluster's rows in one
transaction (the real app, in-process, on PostgreSQL). The floor is json.loads of the same input,
measured in the same run. Writes benchmarks/results/bench_k8s_sync.md.

    python3 benchmarks/bench_k8s_sync.py [--pods 50000] [--database-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

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

    from imagetrail.cloud.k8s_inventory import load_objects, normalize
    from imagetrail.server.app import create_app
    from imagetrail.server.auth import Principal
    from imagetrail.server.auth.dependencies import require_ingest
    from imagetrail.server.migrate import upgrade
    from imagetrail.server.settings import Settings

    text = cluster_json(args.pods)
    started = time.perf_counter()
    json.loads(text)
    floor = time.perf_counter() - started
    started = time.perf_counter()
    inventory = normalize(load_objects(text, "cluster.json"), "bench", "file")
    body = json.dumps(inventory.to_dict(), separators=(",", ":"))
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
        timings = []
        with TestClient(app) as client:
            for _ in range(2):  # the second sync also deletes the first one's rows
                started = time.perf_counter()
                response = client.post(
                    "/v1/clusters/bench/inventory", content=body, headers={"Content-Type": "application/json"}
                )
                timings.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text[:300]
        app.state.engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    total = normalise + max(timings)
    lines = [
        f"# bench_k8s_sync ({args.pods:,} pods)",
        "",
        f"{len(inventory.containers):,} containers, {len(body) / 1e6:.1f} MB inventory body; PostgreSQL.",
        "",
        "| step | seconds | / floor |",
        "|---|---|---|",
        f"| floor: json.loads of the kubectl output | {floor:.2f} | 1x |",
        f"| normalise (load + owners + exposure + encode) | {normalise:.2f} | {normalise / floor:.0f}x |",
        f"| POST + validate + replace (first sync) | {timings[0]:.2f} | {timings[0] / floor:.0f}x |",
        f"| POST + validate + replace (re-sync, deletes the old view) | {timings[1]:.2f} | "
        f"{timings[1] / floor:.0f}x |",
        f"| total (normalise + slower POST) | {total:.2f} | target < 30 s: {'met' if total < 30 else 'MISSED'} |",
    ]
    text_out = "\n".join(lines) + "\n"
    print(text_out)
    (ROOT / "benchmarks" / "results" / "bench_k8s_sync.md").write_text(text_out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
