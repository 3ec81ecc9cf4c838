"""Registry-event ingest on PostgreSQL: POST /v1/registry-events throughput from concurrent clients
(Distribution envelopes of ``--batch`` push events each, as a busy registry sends them), and the time from
an event's POST until its push is traceable (``GET /v1/trail`` shows it). Targets (docs/registries.md):
>= 1,000 events/s; traceable within 5 s.

    python3 benchmarks/bench_registry_events.py [--seconds 10] [--clients 16] [--batch 1] [--workers 2]

``--batch 1`` is Distribution's default (one event per request); larger batches show the per-event cost.
Load generator: Python processes with keep-alive http.client connections.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import List, Tuple
from urllib.parse import quote, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import fresh_schema, migrate, percentile, serve, server_env, write_results  # noqa: E402

REGISTRY = "bench.registry.example"


def key(url: str, scope: str) -> str:
    return subprocess.run([sys.executable, "-m", "imagetrail", "keys", "create", "--org", "*", "--scope", scope],
                          env=server_env(url), capture_output=True, text=True, check=True).stdout.splitlines()[0]


def event(n: int, tag: str) -> dict:
    digest = "sha256:" + uuid.uuid5(uuid.NAMESPACE_OID, f"{tag}-{n}").hex * 2
    return {"id": f"{tag}-{n}", "timestamp": datetime.now(timezone.utc).isoformat(), "action": "push",
            "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
                       "repository": f"team-{n % 50}/app-{n % 400}", "tag": f"build-{n}"},
            "request": {"host": REGISTRY, "addr": "10.0.0.7:51234", "useragent": "buildah/1.28.2"},
            "actor": {"name": f"robot-{n % 20}"}}


def _client(args) -> Tuple[int, int, List[float]]:
    base, token, seconds, batch, worker = args
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Authorization": f"Bearer {token}",
               "Content-Type": "application/vnd.docker.distribution.events.v1+json"}
    sent = errors = n = 0
    latencies: List[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = json.dumps({"events": [event(n + i, f"w{worker}-{os.getpid()}") for i in range(batch)]})
        n += batch
        started = time.monotonic()
        connection.request("POST", "/v1/registry-events", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        latencies.append(time.monotonic() - started)
        if response.status == 200:
            sent += batch
        else:
            errors += 1
    return sent, errors, latencies


def to_traceable(base: str, registry_key: str, reader_key: str, samples: int) -> List[float]:
    """Seconds from POSTing one event until GET /v1/trail of its reference shows the push."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    found: List[float] = []
    for n in range(samples):
        one = event(n, f"latency-{uuid.uuid4().hex[:6]}")
        reference = f"{REGISTRY}/{one['target']['repository']}:{one['target']['tag']}"
        started = time.monotonic()
        connection.request("POST", "/v1/registry-events", body=json.dumps({"events": [one]}),
                           headers={"Authorization": f"Bearer {registry_key}", "Content-Type": "application/json"})
        connection.getresponse().read()
        while time.monotonic() - started < 10:
            connection.request("GET", f"/v1/trail?reference={quote(reference)}",
                               headers={"Authorization": f"Bearer {reader_key}"})
            trail = json.loads(connection.getresponse().read())
            if trail.get("registry_pushes"):
                found.append(time.monotonic() - started)
                break
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--batch", type=int, default=1, help="events per request")
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    parser.add_argument("--samples", type=int, default=20, help="event -> traceable measurements")
    parser.add_argument("--no-write", action="store_true", help="print the results; do not write results/")
    args = parser.parse_args(argv)
    with fresh_schema() as url:
        migrate(url)
        registry_key, reader_key = key(url, "registry"), key(url, "read")
        with serve(url, args.workers) as (base, _pid):
            load = os.getloadavg()[0]
            started = time.monotonic()
            with multiprocessing.Pool(args.clients) as pool:
                results = pool.map(_client, [(base, registry_key, args.seconds, args.batch, i)
                                             for i in range(args.clients)])
            elapsed = time.monotonic() - started
            sent = sum(r[0] for r in results)
            errors = sum(r[1] for r in results)
            latencies = [x for r in results for x in r[2]]
            traceable = to_traceable(base, registry_key, reader_key, args.samples)
    rows = [("measure", "value"),
            ("events/s", f"{sent / elapsed:,.0f} (goal >= 1,000)"),
            ("requests", f"{len(latencies):,} ({args.batch} event(s) each), {errors} errors"),
            ("request latency", f"p50 {statistics.median(latencies) * 1000:.1f} ms, "
                                f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms" if latencies else "-"),
            ("event -> traceable", f"p50 {statistics.median(traceable) * 1000:.1f} ms, max "
                                   f"{max(traceable) * 1000:.1f} ms ({len(traceable)}/{args.samples} seen; goal < 5 s)"
             if traceable else f"0/{args.samples} seen"),
            ("load average (1 min) at start", f"{load:.2f}")]
    notes = [f"{args.clients} clients x {args.seconds:.0f} s, server --workers {args.workers}, PostgreSQL, "
             f"{os.cpu_count()} cores."]
    if args.no_write:
        print("\n".join(" | ".join(r) for r in rows))
    else:
        write_results("bench_registry_events", "Registry-event ingest (POST /v1/registry-events)", rows, notes)
    return 0 if sent and not errors and len(traceable) == args.samples else 1


if __name__ == "__main__":
    raise SystemExit(main())
