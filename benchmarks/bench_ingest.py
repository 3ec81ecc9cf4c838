"""Ingest throughput on PostgreSQL: POST /v1/reports from many concurrent clients, next to the
database floor (the same rows written by a plain psycopg batch), and the time from a
collector's send until the image is traceable. Target (docs/backend.md): >= 1,000 reports/s.

    python3 benchmarks/bench_ingest.py [--reports 4000] [--clients 32] [--workers 2]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, List, Sequence
from urllib.parse import urlsplit

import psycopg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
POSTGRES_URL = os.environ.get("IMAGETRAIL_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def fresh_schema() -> Iterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def migrate(url: str) -> None:
    from imagetrail.server.db import make_engine
    from imagetrail.server.migrate import upgrade

    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()


def admin_key(url: str) -> str:
    env = {**os.environ, "IMAGETRAIL_DATABASE_URL": url, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "imagetrail", "keys", "create", "--org", "*", "--scope", "admin"],
                          env=env, capture_output=True, text=True, check=True).stdout.strip()


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: List[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:.2f} ms, p99 {percentile(values, 0.99) * 1000:.2f} ms"


def write_results(name: str, title: str, rows: List[Sequence[str]], notes: List[str]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    table = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    table.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    text = "\n".join([f"# {title}", "", *table, "", *notes, ""])
    print(text)
    (ROOT / "benchmarks" / "results" / f"{name}.md").write_text(text)


from tests.server.reports import ado_report, body, digest, push  # noqa: E402
from tests.support.live_server import free_port, running_server  # noqa: E402


def make_bodies(n: int):
    # 10 jobs per run, 2 pushes per job (one shared base image): realistic sharing of dimension rows
    return [body(ado_report(run_id=str(i // 10), job=f"job{i % 10}",
                            pushes=[push("127.0.0.1:5000/web/app:latest", digest(f"bench{i}")),
                                    push("127.0.0.1:5000/web/base:1", digest("base"))]))
            for i in range(n)]


def serve_load(url: str, key: str, bodies, clients: int):
    host = urlsplit(url)
    local = threading.local()
    latencies = []

    def send(payload: bytes):
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
        start = time.perf_counter()
        conn.request("POST", "/v1/reports", body=payload,
                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - start)
        if response.status not in (200, 201):
            raise RuntimeError(f"HTTP {response.status}")

    payloads = [json.dumps(b).encode() for b in bodies]
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, payloads))
    return len(payloads) / (time.perf_counter() - start), latencies


def floor(url: str, bodies) -> float:
    """The rows a report produces, written with executemany in batches of 100 reports per transaction."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    now = datetime.now(timezone.utc)
    start = time.perf_counter()
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO organizations (id, system, name) VALUES (1, 'azure-devops', 'contoso')")
        cur.execute("INSERT INTO projects (id, organization_id, name) VALUES (1, 1, 'Web')")
        cur.execute("INSERT INTO pipelines (id, project_id, external_id) VALUES (1, 1, '12')")
        cur.execute("INSERT INTO image_references (id, registry, repository, tag) VALUES "
                    "(1, '127.0.0.1:5000', 'web/app', 'latest'), (2, '127.0.0.1:5000', 'web/base', '1')")
        for offset in range(0, len(bodies), 100):
            batch = bodies[offset:offset + 100]
            runs = sorted({int(b["context"]["run"]["id"]) for b in batch})
            cur.executemany("INSERT INTO runs (id, pipeline_id, external_id, attempt) VALUES (%s, 1, %s, 1) "
                            "ON CONFLICT DO NOTHING", [(r + 1, str(r)) for r in runs])
            cur.executemany("INSERT INTO jobs (id, run_id, external_id, attempt) VALUES (%s, %s, %s, 1)",
                            [(offset + i + 1, int(b["context"]["run"]["id"]) + 1, b["context"]["job"]["id"])
                             for i, b in enumerate(batch)])
            cur.executemany("INSERT INTO reports (id, schema_version, received_at, identity_kind, identity_subject, "
                            "job_id, body) VALUES (%s, '1.0', %s, 'api-key', 'bench', %s, %s)",
                            [(b["reportId"], now, offset + i + 1, json.dumps(b)) for i, b in enumerate(batch)])
            cur.executemany("INSERT INTO images (digest, first_seen_at) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                            [(p["digest"], now) for b in batch for p in b["pushes"]])
            cur.executemany("INSERT INTO pushes (report_id, job_id, reference_id, digest, reference, labels, pushed_at)"
                            " VALUES (%s, %s, %s, %s, %s, '{}', %s)",
                            [(b["reportId"], offset + i + 1, 1 if p["repository"] == "web/app" else 2, p["digest"],
                              p["reference"], now) for i, b in enumerate(batch) for p in b["pushes"]])
            conn.commit()
    return len(bodies) / (time.perf_counter() - start)


def send_to_traceable(url: str, key: str, samples: int = 20):
    import requests

    times = []
    headers = {"Authorization": f"Bearer {key}"}
    with requests.Session() as session:
        for i in range(samples):
            report = body(ado_report(run_id=f"t{i}", pushes=[push("127.0.0.1:5000/web/t:1", digest(f"trace{i}"))]))
            start = time.perf_counter()
            session.post(url + "/v1/reports", json=report, headers=headers).raise_for_status()
            while not session.get(f"{url}/v1/images/{digest(f'trace{i}')}/trail", headers=headers).json()["pushes"]:
                time.sleep(0.01)
            times.append(time.perf_counter() - start)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reports", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    bodies = make_bodies(args.reports)
    with fresh_schema() as url:
        migrate(url)
        floor_rate = floor(url, bodies)
    with fresh_schema() as url:
        migrate(url)
        key = admin_key(url)
        with running_server(url) if args.workers == 1 else _workers(url, args.workers) as base:
            serve_load(base, key, make_bodies(200), args.clients)  # warm-up: pools, caches
            rate, latencies = serve_load(base, key, bodies, args.clients)
            traceable = send_to_traceable(base, key)
    write_results("bench_ingest", "Ingest throughput on PostgreSQL", [
        ("measure", "value", "ratio to floor"),
        ("plain psycopg batch (floor)", f"{floor_rate:,.0f} reports/s", "1.00"),
        (f"POST /v1/reports, {args.clients} clients, {args.workers} workers", f"{rate:,.0f} reports/s",
         f"{rate / floor_rate:.2f}"),
        ("request latency", summary(latencies), ""),
        ("send -> traceable", summary(traceable), ""),
    ], [f"{args.reports} reports (2 pushes each, 10 jobs per run) on one machine with {_cores()} cores shared "
        "by the clients, the server and PostgreSQL. Target: >= 1,000 reports/s; traceable within 5 s.",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d}."])
    return 0


def _cores() -> int:
    return os.cpu_count() or 1


@contextmanager
def _workers(url: str, workers: int):
    """`imagetrail serve --workers N` (running_server starts a single worker)."""
    port = free_port()
    env = {**os.environ, "IMAGETRAIL_DATABASE_URL": url, "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen([sys.executable, "-m", "imagetrail", "serve", "--port", str(port),
                                "--workers", str(workers), "--log-level", "warning"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(30)


if __name__ == "__main__":
    raise SystemExit(main())
