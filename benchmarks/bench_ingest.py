"""Ingest throughput on PostgreSQL: POST /v1/reports from many concurrent clients, next to the
database floor (the same rows written by plain psycopg COPY batches), with the CPU split
between load generator, server and PostgreSQL, and the time from a collector's send until
the image is traceable. Targets (docs/backend.md): >= 1,000 reports/s; traceable within 5 s.
Two more floors, on the same server, with the same POSTs: the HTTP stack alone (to a GET-only route
that answers 405 without reading them), and the ingest route's own stack (a read-only key: the lane,
the middleware and the scope check answer 403 before the body is read).

    python3 benchmarks/bench_ingest.py [--seconds 10] [--connections 64] [--workers 2] [--output FILE]

The load generator is ``wrk`` (Debian package, installed with apt-get when missing) with a
Lua script that posts distinct, valid reports over keep-alive connections: a C client costs
the shared cores far less than a Python one would. Without wrk, a few Python processes with
http.client keep-alive connections stand in (and say so in the results).
``IMAGETRAIL_BENCH_SRC=DIR`` runs the server from another source tree (before/after runs).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

import psycopg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
POSTGRES_URL = os.environ.get("IMAGETRAIL_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SERVER_SRC = os.environ.get("IMAGETRAIL_BENCH_SRC", str(ROOT / "src"))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

from imagetrail.gc_pause import paused_gc  # noqa: E402
from tests.server.reports import ado_report, body, digest, push  # noqa: E402
from tests.support.live_server import free_port  # noqa: E402

# -- shared helpers (bench_trace.py uses them too) ------------------------------------------


@contextmanager
def fresh_schema(keep: bool = False) -> Iterator[str]:
    """A new PostgreSQL schema, dropped afterwards unless ``keep`` (then its name is printed, for EXPLAIN)."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        if keep:
            print(f"kept schema {schema}")
        else:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def libpq_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def migrate(url: str) -> None:
    from imagetrail.store.db import make_engine
    from imagetrail.store.migrate import upgrade

    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()


def server_env(url: str, src: str = "") -> Dict[str, str]:
    return {**os.environ, "IMAGETRAIL_DATABASE_URL": url, "PYTHONPATH": src or SERVER_SRC}


def api_key(url: str, scope: str = "admin") -> str:
    return subprocess.run([sys.executable, "-m", "imagetrail", "keys", "create", "--org", "*", "--scope", scope],
                          env=server_env(url), capture_output=True, text=True, check=True).stdout.strip()


def settle(below: float = 1.0, longest: float = 180.0) -> float:
    """Wait (at most ``longest`` s) for the 1-minute load average to fall under ``below``; returns it."""
    deadline = time.monotonic() + longest
    while os.getloadavg()[0] >= below and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: List[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:.2f} ms, p99 {percentile(values, 0.99) * 1000:.2f} ms"


def write_results(name: str, title: str, rows: List[Sequence[str]], notes: List[str],
                  output: Optional[Path] = None) -> None:
    """Print the results and write them to ``output`` (default: benchmarks/results/<name>.md)."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    table = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    table.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    text = "\n".join([f"# {title}", "", *table, "", *notes, ""])
    print(text)
    (output or ROOT / "benchmarks" / "results" / f"{name}.md").write_text(text)


@contextmanager
def serve(url: str, workers: int, src: str = "") -> Iterator[Tuple[str, int]]:
    """`imagetrail serve --workers N` (from source tree ``src``) on a free port; yields (base URL, pid)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "imagetrail", "serve", "--port", str(port),
                                "--workers", str(workers), "--log-level", "warning"], env=server_env(url, src))
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        yield base, process.pid
    finally:
        process.terminate()
        process.wait(30)


# -- CPU accounting from /proc --------------------------------------------------------------

def _stat(pid: int) -> Tuple[str, int, float, float]:
    """(command name, parent pid, user+system CPU seconds, the same of its children that have exited and
    been waited for) of a process."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    name = raw[raw.index("(") + 1:raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2:].split()
    return (name, int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
            (int(fields[13]) + int(fields[14])) / CLOCK_TICKS)


def cpu_by_group(groups: Dict[str, int]) -> Dict[str, float]:
    """CPU seconds used so far by the process trees rooted at ``groups`` pids, including the children a
    root has waited for (wrk, once it exits), and by PostgreSQL (every process named postgres, so other
    users of the same server count too)."""
    procs = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                procs[int(entry.name)] = _stat(int(entry.name))
            except (OSError, ValueError):
                continue
    totals = {name: 0.0 for name in groups} | {"postgresql": 0.0}

    def root_of(pid: int) -> str:
        seen = 0
        while pid in procs and seen < 50:
            for name, root in groups.items():
                if pid == root:
                    return name
            pid, seen = procs[pid][1], seen + 1
        return ""

    for pid, (name, _, cpu, waited_children) in procs.items():
        group = root_of(pid)
        if group:
            totals[group] += cpu + (waited_children if pid == groups[group] else 0.0)
        elif name == "postgres":
            totals["postgresql"] += cpu
    return totals


# -- reports --------------------------------------------------------------------------------

def make_bodies(n: int, tag: str = "bench") -> List[dict]:
    """10 jobs per run, 2 pushes per job (one shared base image): realistic sharing of dimension rows."""
    return [body(ado_report(run_id=f"{tag}{i // 10}", job=f"job{i % 10}",
                            pushes=[push("127.0.0.1:5000/web/app:latest", digest(f"{tag}{i}")),
                                    push("127.0.0.1:5000/web/base:1", digest("base"))]))
            for i in range(n)]


# -- the database floor ---------------------------------------------------------------------

def floor(url: str, bodies: List[dict], batch: int = 200) -> float:
    """The rows of these reports written with COPY, ``batch`` reports per transaction, ids
    assigned by the client: what the database itself costs, with no lookups at all."""
    now = datetime.now(timezone.utc)
    run_ids: Dict[str, int] = {}
    images = set()
    start = time.perf_counter()
    with psycopg.connect(libpq_dsn(url)) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO organizations (id, system, name) VALUES (1, 'azure-devops', 'contoso')")
        cur.execute("INSERT INTO projects (id, organization_id, name) VALUES (1, 1, 'Web')")
        cur.execute("INSERT INTO pipelines (id, project_id, external_id) VALUES (1, 1, '12')")
        cur.execute("INSERT INTO image_references (id, registry, repository, tag) VALUES "
                    "(1, '127.0.0.1:5000', 'web/app', 'latest'), (2, '127.0.0.1:5000', 'web/base', '1')")
        conn.commit()
        for offset in range(0, len(bodies), batch):
            chunk = bodies[offset:offset + batch]
            with cur.copy("COPY runs (id, pipeline_id, external_id, attempt) FROM STDIN") as copy:
                for b in chunk:
                    run = b["context"]["run"]["id"]
                    if run not in run_ids:
                        run_ids[run] = len(run_ids) + 1
                        copy.write_row((run_ids[run], 1, run, 1))
            with cur.copy("COPY jobs (id, run_id, external_id, attempt) FROM STDIN") as copy:
                for i, b in enumerate(chunk, offset + 1):
                    copy.write_row((i, run_ids[b["context"]["run"]["id"]], b["context"]["job"]["id"], 1))
            with cur.copy("COPY reports (id, schema_version, received_at, identity_kind, identity_subject, job_id, "
                          "body) FROM STDIN") as copy:
                for i, b in enumerate(chunk, offset + 1):
                    copy.write_row((b["reportId"], "1.0", now, "api-key", "bench", i, json.dumps(b)))
            with cur.copy("COPY images (digest, first_seen_at) FROM STDIN") as copy:
                for b in chunk:
                    for p in b["pushes"]:
                        if p["digest"] not in images:
                            images.add(p["digest"])
                            copy.write_row((p["digest"], now))
            with cur.copy("COPY pushes (report_id, job_id, reference_id, digest, reference, labels, pushed_at) "
                          "FROM STDIN") as copy:
                for i, b in enumerate(chunk, offset + 1):
                    for p in b["pushes"]:
                        copy.write_row((b["reportId"], i, 1 if p["repository"] == "web/app" else 2, p["digest"],
                                        p["reference"], "{}", now))
            conn.commit()
    return len(bodies) / (time.perf_counter() - start)


# -- load generators ------------------------------------------------------------------------

WRK_SCRIPT = r"""
local counter, threads = 0, {}
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  target = args[4] or "/v1/reports"
  bodies, index, created, duplicate, other = {}, 0, 0, 0, 0
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == tid then bodies[#bodies + 1] = line end
    i = i + 1
  end
  headers = {["Authorization"] = "Bearer " .. args[3], ["Content-Type"] = "application/json"}
end
function request()
  index = index % #bodies + 1
  return wrk.format("POST", target, headers, bodies[index])
end
function response(status, headers, body)
  if status == 201 then created = created + 1
  elseif status == 200 then duplicate = duplicate + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local c, d, o = 0, 0, 0
  for _, t in ipairs(threads) do
    c, d, o = c + t:get("created"), d + t:get("duplicate"), o + t:get("other")
  end
  local e = summary.errors
  io.write(string.format('WRK_RESULT {"requests": %d, "duration_us": %d, "created": %d, "duplicate": %d, ' ..
    '"other": %d, "p50_us": %d, "p99_us": %d, "errors": %d}\n', summary.requests, summary.duration, c, d, o,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def ensure_wrk() -> bool:
    if shutil.which("wrk"):
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return shutil.which("wrk") is not None


def run_wrk(base: str, key: str, bodies: List[dict], seconds: float, connections: int, threads: int,
            on_start=None, path: str = "/v1/reports") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        script, data = Path(tmp, "post.lua"), Path(tmp, "bodies.jsonl")
        script.write_text(WRK_SCRIPT)
        data.write_text("\n".join(json.dumps(b, separators=(",", ":")) for b in bodies) + "\n")
        process = subprocess.Popen(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{int(seconds)}s",
                                    "--timeout", "30s", "-s", str(script), base, "--", str(data), str(threads), key, path],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if on_start:
            on_start(process.pid)
        out, _ = process.communicate()
    line = next((line for line in out.splitlines() if line.startswith("WRK_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk did not report:\n{out}")
    result = json.loads(line[len("WRK_RESULT "):])
    result["latencies"] = None
    return result


def _python_client(args) -> Tuple[int, int, List[float]]:
    base, key, payloads, deadline = args
    host = urlsplit(base)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    created = other = 0
    latencies = []
    for payload in payloads:
        if time.time() > deadline:
            break
        start = time.perf_counter()
        conn.request("POST", "/v1/reports", body=payload, headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - start)
        created += response.status == 201
        other += response.status not in (200, 201)
    return created, other, latencies


def run_python_clients(base: str, key: str, bodies: List[dict], seconds: float, connections: int,
                       on_start=None) -> dict:
    """Fallback load: ``connections`` keep-alive connections spread over 2 processes' threads."""
    from concurrent.futures import ThreadPoolExecutor

    payloads = [json.dumps(b).encode() for b in bodies]
    deadline = time.time() + seconds
    shares = [(base, key, payloads[i::connections], deadline) for i in range(connections)]
    start = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        results = list(pool.map(_python_client, shares))
    elapsed = time.perf_counter() - start
    latencies = [x for r in results for x in r[2]]
    return {"requests": len(latencies), "duration_us": elapsed * 1e6, "created": sum(r[0] for r in results),
            "duplicate": 0, "other": sum(r[1] for r in results), "errors": 0,
            "p50_us": statistics.median(latencies) * 1e6, "p99_us": percentile(latencies, 0.99) * 1e6}


def send_to_traceable(base: str, key: str, samples: int = 20) -> List[float]:
    """One report at a time, as a collector sends it; then poll the trail until it shows."""
    times = []
    host = urlsplit(base)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with paused_gc():  # this client's own collector passes are not the server's latency (bench_trace.py)
        for i in range(samples):
            image = digest(f"trace{uuid.uuid4()}")
            report = body(ado_report(run_id=f"t{i}", pushes=[push("127.0.0.1:5000/web/t:1", image)]))
            start = time.perf_counter()
            conn.request("POST", "/v1/reports", body=json.dumps(report), headers=headers)
            answer = conn.getresponse()
            answer.read()
            assert answer.status == 201, answer.status
            while True:
                conn.request("GET", f"/v1/images/{image}/trail", headers=headers)
                trail = json.loads(conn.getresponse().read())
                if trail["pushes"]:
                    break
                time.sleep(0.01)
            times.append(time.perf_counter() - start)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-rate", type=int, default=3000, help="bodies prepared per second of load")
    parser.add_argument("--floor-reports", type=int, default=20000)
    parser.add_argument("--output", type=Path, help="write the results here instead of benchmarks/results/")
    args = parser.parse_args(argv)
    use_wrk = ensure_wrk()
    bodies = make_bodies(int(args.seconds * args.max_rate))
    floor_bodies = make_bodies(args.floor_reports, "floor")

    def measure_floor() -> float:
        with fresh_schema() as url:
            migrate(url)
            return floor(url, floor_bodies)

    floor_before = measure_floor()
    with fresh_schema() as url:
        migrate(url)
        key, read_key = api_key(url), api_key(url, "read")
        with serve(url, args.workers) as (base, server_pid):
            load = (lambda **kw: run_wrk(base, key, threads=2, **kw)) if use_wrk else \
                (lambda **kw: run_python_clients(base, key, **kw))
            load(bodies=make_bodies(2000, "warm"), seconds=2, connections=args.connections)  # pools, caches
            # The same POSTs to a GET-only route: the server answers 405 without reading the body, so
            # this is what the HTTP stack alone (uvicorn, Starlette, the sockets) allows on these cores.
            # First, then a wait for its load to pass, so the load average after the run is the ingest's own.
            stack = run_wrk(base, key, bodies, seconds=args.seconds, connections=args.connections, threads=2,
                            path="/healthz") if use_wrk else None
            # The ingest route's own stack: what every report pays before its body is read.
            groups = {"server": server_pid, "load generator": os.getpid()}
            route_before = cpu_by_group(groups)
            route_stack = run_wrk(base, read_key, bodies, seconds=args.seconds, connections=args.connections,
                                  threads=2) if use_wrk else None
            route_server_cpu = cpu_by_group(groups)["server"] - route_before["server"]
            ingest_load = settle()
            before = cpu_by_group(groups)

            def started(_: int) -> None:  # wrk runs: its bodies file is written, so from here this process idles
                before.update(cpu_by_group(groups))

            result = load(bodies=bodies, seconds=args.seconds, connections=args.connections, on_start=started)
            after = cpu_by_group(groups)  # wrk has exited and been waited for: its CPU is this process's children's
            traceable = send_to_traceable(base, key)
    # The machine's speed drifted by up to 20% within one run: the floor is taken on both sides of the runs, averaged.
    floor_after = measure_floor()
    floor_rate = (floor_before + floor_after) / 2
    elapsed = result["duration_us"] / 1e6
    rate = result["created"] / elapsed
    stack_rate = stack["requests"] / (stack["duration_us"] / 1e6) if stack else 0.0
    route_rate = route_stack["other"] / (route_stack["duration_us"] / 1e6) if route_stack else 0.0
    cpu = {name: after[name] - before[name] for name in after}
    cores = os.cpu_count() or 1
    split = ", ".join(f"{name} {cpu[name] / elapsed / cores:.0%}" for name in
                      ("load generator", "server", "postgresql"))
    per_report = ", ".join(f"{name} {cpu[name] / max(1, result['created']) * 1e6:.0f} us" for name in
                           ("load generator", "server", "postgresql"))
    generator = (f"wrk, 2 threads, {args.connections} keep-alive connections" if use_wrk else
                 f"Python http.client, {args.connections} keep-alive connections (wrk not installed)")
    write_results("bench_ingest", "Ingest throughput on PostgreSQL", [
        ("measure", "value", "ratio to floor"),
        ("PostgreSQL COPY, 200 reports per transaction (floor: the mean of before and after the runs)",
         f"{floor_rate:,.0f} reports/s ({floor_before:,.0f} before, {floor_after:,.0f} after)", "1.00"),
        (f"POST /v1/reports, {args.connections} connections, {args.workers} workers", f"{rate:,.0f} reports/s",
         f"{rate / floor_rate:.2f}"),
        ("request latency", f"p50 {result['p50_us'] / 1000:.2f} ms, p99 {result['p99_us'] / 1000:.2f} ms", ""),
        *([("HTTP stack alone: the same POSTs to GET-only /healthz (405, body unread)",
            f"{stack_rate:,.0f} requests/s", f"{stack_rate / floor_rate:.2f}"),
           ("ingest against the HTTP stack alone", "", f"{rate / stack_rate:.2f}"),
           ("the ingest route's stack alone: the same POSTs with a read-only key (403 from the lane, body unread)",
            f"{route_rate:,.0f} requests/s; server {route_server_cpu / max(1, route_stack['other']) * 1e6:.0f} us "
            "each", f"{route_rate / floor_rate:.2f}"),
           ("ingest against its route's stack alone", "", f"{rate / route_rate:.2f}")] if stack else []),
        ("CPU, share of all cores", split, ""),
        ("CPU per stored report", per_report, ""),
        ("send -> traceable (one report, then poll the trail)", summary(traceable), ""),
    ], [f"{result['created']:,} reports stored in {elapsed:.1f} s ({result['duplicate']} duplicates, "
        f"{result['other']} other answers, {result['errors']} socket errors); 2 pushes each, 10 jobs per run, "
        f"one shared base image. Load: {generator}.",
        f"One machine with {cores} cores shared by the load generator, the server and PostgreSQL "
        "(synchronous_commit on). Target: >= 1,000 reports/s; traceable within 5 s.",
        f"Load average over the last minute when the ingest load started: {ingest_load:.1f}; before writing: "
        f"{os.getloadavg()[0]:.1f} (other work on the machine competes for the same cores when it is above ~1).",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d}."], output=args.output)
    return 0


if __name__ == "__main__":
    multiprocessing.freeze_support()
    raise SystemExit(main())
