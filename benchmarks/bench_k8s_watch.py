"""``k8s sync --watch`` on a large cluster: what one flush costs, on the watcher and on the backend.

Uses the 50,000-pod cluster of bench_k8s_sync.py (1,000 namespaces). Times, on the watcher
(``ClusterWatch`` with a sink that only counts):

- the first full sync (normalise everything);
- a flush after one pod changed: only its namespace is normalised again (the steady state);
- a flush after a relist of the pods (every namespace is normalised again);

and on the backend (``store.apply_changes`` in one transaction on PostgreSQL, the cluster's full
inventory stored first): one changed pod, and a batch of 1,000. Writes
benchmarks/results/bench_k8s_watch.md. Targets: a one-pod flush well under the 2 s flush interval
on the watcher, and under 1 s on the backend.

    python3 benchmarks/bench_k8s_watch.py [--pods 50000] [--database-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import sqlalchemy as sa  # noqa: E402
from bench_k8s_sync import DEFAULT_URL, cluster_json  # noqa: E402


class CountingSink:
    def __init__(self) -> None:
        self.inventory = None
        self.pods_sent = 0

    def replace(self, inventory, allow_empty):
        self.inventory = inventory

    def changes(self, cluster, pods, removed):
        self.pods_sent += len(pods) + len(removed)

    def scans(self, cluster, reports):
        pass


def timed(call):
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def watcher_side(objects):
    from imagetrail.client.k8s_watch import ClusterWatch, _key

    sink = CountingSink()
    watch = ClusterWatch(None, "bench", sink)
    for obj in objects:
        watch.objects.setdefault(obj["kind"], {})[_key(obj)] = obj
    first, inventory = timed(watch._inventory)
    watch._sent_pods = watch._by_pod(inventory)
    pod = copy.deepcopy(next(o for o in objects if o["kind"] == "Pod"))
    pod["status"]["containerStatuses"][0]["imageID"] = "acr.example.io/team/x@sha256:" + "e" * 64
    watch.objects["Pod"][_key(pod)] = pod
    one, _ = timed(lambda: watch.flush({pod["metadata"]["namespace"]}))
    assert sink.pods_sent == 1, sink.pods_sent
    everything, _ = timed(lambda: watch.flush(None))
    return len(inventory.containers), first, one, everything


def backend_side(objects, database_url):
    from imagetrail.ingest import cloud as store
    from imagetrail.parsers.k8s_inventory import normalize
    from imagetrail.store.db import make_engine, make_sessionmaker, transaction
    from imagetrail.store.migrate import upgrade

    inventory = normalize(objects, "bench", "file").to_dict()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        engine = make_engine(f"{database_url}?options=-csearch_path%3D{schema}")
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        with transaction(sessions) as session:
            store.replace_inventory(session, store.InventoryIn.model_validate(inventory))
        by_pod = {}
        for container in inventory["containers"]:
            by_pod.setdefault((container["namespace"], container["pod"]), []).append(container)
        keys = sorted(by_pod)

        def apply(count):
            body = {"cluster": "bench", "pods": [
                {"namespace": ns, "pod": pod, "containers": by_pod[(ns, pod)]} for ns, pod in keys[:count]]}
            changes = store.ChangesIn.model_validate_json(json.dumps(body))
            with transaction(sessions) as session:
                return store.apply_changes(session, changes)

        one, _ = timed(lambda: apply(1))
        batch, _ = timed(lambda: apply(1000))
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    return one, batch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=50_000)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "bench_k8s_watch.md"))
    args = parser.parse_args()
    from imagetrail.parsers.k8s_inventory import load_objects

    objects = load_objects(cluster_json(args.pods), "cluster.json")
    containers, first, one, everything = watcher_side(objects)
    backend_one, backend_batch = backend_side(objects, args.database_url)
    load = os.getloadavg()[0]
    lines = [
        f"# bench_k8s_watch ({args.pods:,} pods)",
        "",
        f"{containers:,} containers in 1,000 namespaces; PostgreSQL; load average {load:.1f} when it ended.",
        "",
        "| step | seconds |",
        "|---|---|",
        f"| watcher: first full sync (normalise everything) | {first:.3f} |",
        f"| watcher: flush after one pod changed (its namespace only; target < 2 s) | {one:.3f} |",
        f"| watcher: flush after a relist (every namespace) | {everything:.3f} |",
        f"| backend: apply 1 changed pod (target < 1 s) | {backend_one:.3f} |",
        f"| backend: apply 1,000 changed pods | {backend_batch:.3f} |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
