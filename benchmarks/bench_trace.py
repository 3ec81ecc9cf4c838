"""Trace latency on PostgreSQL with 1,000,000 stored pushes, over HTTP, next to a plain
indexed SELECT of the same pushes in the same run. Target (docs/backend.md): p99 < 20 ms.

    python3 benchmarks/bench_trace.py [--pushes 1000000] [--queries 400] [--before-src DIR] [--output FILE] [--keep-schema]

``--before-src DIR`` also measures a server run from another source tree on the same data
(e.g. the previous commit: ``git archive HEAD src | tar -x -C DIR``) for before/after rows.
``--output FILE`` writes the table there instead of ``benchmarks/results/bench_trace.md`` (trial runs,
small scale, or figures taken while other work runs, which must not replace the recorded ones).

The pushes are bulk-loaded with COPY (not through the API), with a realistic spread: 20
organisations, 2,000 pipelines, one report per job, two pushes per job (a version tag and
``latest`` of the same digest), image repositories of very unequal popularity (the busiest
``latest`` tags have thousands of pushes), one job in ten pushing a shared mirror image
(digests with thousands of pushes) and one digest in ten an index with two platform
manifests. Report bodies are small stand-ins (the trail never reads them).
An HTTP floor row times ``GET /healthz`` (no database) on the same kind of connection: the server's fixed cost
per request, which a faster database does not shrink. Queries: digests and references of pipeline-built images
drawn from the stored pushes (so
busy references come up as often as they are pushed), platform digests (found through
their index), and the busiest references and mirror digests: their first page (the default
50 pushes), a full page of 500 (``limit=500``; what a server without paging returns) and
the second page through the ``next`` cursor of the first.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Dict, List, Sequence, Tuple
from urllib.parse import quote, urlsplit

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import (  # noqa: E402
    api_key,
    fresh_schema,
    libpq_dsn,
    migrate,
    percentile,
    serve,
    write_results,
)

from imagetrail.gc_pause import paused_gc  # noqa: E402  (bench_ingest put src/ on the path)

ORGS, PROJECTS_PER_ORG, PIPELINES_PER_PROJECT = 20, 10, 10
JOBS_PER_RUN = 5
REPOSITORIES = 50_000
MIRROR_DIGESTS = 20


def sha(n: int, kind: str = "d") -> str:
    return "sha256:" + f"{kind}{n:063x}"[-64:]


def load(dsn: str, pushes: int, seed: int = 7) -> Dict[str, List[str]]:
    """COPY the rows of ``pushes`` pushes; returns samples of what to query."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    jobs = pushes // 2
    runs = jobs // JOBS_PER_RUN
    pipelines = ORGS * PROJECTS_PER_ORG * PIPELINES_PER_PROJECT
    samples: Dict[str, List[str]] = {"digest": [], "reference": [], "platform": []}
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy("COPY organizations (id, system, name, server_url) FROM STDIN") as copy:
            for o in range(ORGS):
                copy.write_row((o + 1, "azure-devops", f"org{o}", f"https://dev.azure.com/org{o}/"))
        with cur.copy("COPY projects (id, organization_id, name) FROM STDIN") as copy:
            for p in range(ORGS * PROJECTS_PER_ORG):
                copy.write_row((p + 1, p // PROJECTS_PER_ORG + 1, f"project{p}"))
        with cur.copy("COPY pipelines (id, project_id, external_id, name) FROM STDIN") as copy:
            for p in range(pipelines):
                copy.write_row((p + 1, p // PIPELINES_PER_PROJECT + 1, str(p), f"pipeline-{p}"))
        with cur.copy("COPY repositories (id, organization_id, uri, name, type) FROM STDIN") as copy:
            for p in range(ORGS * PROJECTS_PER_ORG):
                copy.write_row((p + 1, p // PROJECTS_PER_ORG + 1,
                                f"https://dev.azure.com/org{p // PROJECTS_PER_ORG}/project{p}/_git/app", "app", "TfsGit"))
        with cur.copy("COPY people (id, organization_id, key, name, email) FROM STDIN") as copy:
            for o in range(ORGS):
                for u in range(50):
                    copy.write_row((o * 50 + u + 1, o + 1, f"user{u}@org{o}.example", f"User {u}",
                                    f"user{u}@org{o}.example"))
        with cur.copy("COPY runs (id, pipeline_id, external_id, attempt, number, repository_id, branch, \"commit\", "
                      "requester_id) FROM STDIN") as copy:
            for r in range(runs):
                pipeline = r % pipelines
                project = pipeline // PIPELINES_PER_PROJECT
                org = project // PROJECTS_PER_ORG
                copy.write_row((r + 1, pipeline + 1, str(100000 + r), 1, f"2024.{r}", project + 1, "refs/heads/main",
                                f"{r:040x}", org * 50 + r % 50 + 1))
        with cur.copy("COPY jobs (id, run_id, external_id, name, attempt, stage) FROM STDIN") as copy:
            for j in range(jobs):
                copy.write_row((j + 1, j // JOBS_PER_RUN + 1, f"job{j % JOBS_PER_RUN}", f"Job {j % JOBS_PER_RUN}",
                                1, "build"))
        with cur.copy("COPY reports (id, schema_version, received_at, identity_kind, identity_subject, job_id, body) "
                      "FROM STDIN") as copy:
            for j in range(jobs):
                copy.write_row((sha(j, "f"), "1.0", now - timedelta(seconds=jobs - j), "azure-devops",
                                f"p://org/project/pipeline-{j}", j + 1, '{"stand-in": true}'))
        # References: popularity of repositories is very unequal (a few get most pushes).
        reference_ids: Dict[Tuple[int, str], int] = {}
        push_rows = []
        digests_with_platforms = []
        for j in range(jobs):
            repository = int(REPOSITORIES * rng.random() ** 3)
            mirror = j % 10 == 9
            digest = sha((j // 10) % MIRROR_DIGESTS, "e") if mirror else sha(j)
            tags = ["latest", f"1.{j}"] if not mirror else ["mirror"]
            for tag in tags:
                key = (repository, tag)
                if key not in reference_ids:
                    reference_ids[key] = len(reference_ids) + 1
                push_rows.append((sha(j, "f"), j + 1, reference_ids[key], digest, repository, tag,
                                  now - timedelta(seconds=jobs - j)))
            if not mirror and j % 10 == 0:
                digests_with_platforms.append(j)
        with cur.copy("COPY image_references (id, registry, repository, tag) FROM STDIN") as copy:
            for (repository, tag), ref_id in reference_ids.items():
                copy.write_row((ref_id, "registry.example", f"team/app{repository}", tag))
        with cur.copy("COPY images (digest, first_seen_at) FROM STDIN") as copy:
            for d in sorted({row[3] for row in push_rows}):
                copy.write_row((d, now))
        with cur.copy("COPY pushes (report_id, job_id, reference_id, digest, reference, pushed_at, labels) "
                      "FROM STDIN") as copy:
            for report, job, ref_id, digest, repository, tag, at in push_rows:
                copy.write_row((report, job, ref_id, digest, f"registry.example/team/app{repository}:{tag}", at, "{}"))
        with cur.copy("COPY image_relations (index_digest, manifest_digest, os, architecture, source, recorded_at) "
                      "FROM STDIN") as copy:
            for j in digests_with_platforms:
                for arch in ("amd64", "arm64"):
                    copy.write_row((sha(j), sha(j, "a" if arch == "amd64" else "b"), "linux", arch, "collector", now))
        conn.commit()
        # VACUUM too, as a server in steady state has been: otherwise autovacuum's pass over the million rows
        # just COPYed (PostgreSQL 13+ vacuums after inserts) runs during the measurements.
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE")
        conn.autocommit = False
        while len(samples["digest"]) < 400:  # images built by a pipeline (the busy mirror digests come below)
            row = push_rows[rng.randrange(len(push_rows))]
            if row[5] != "mirror":
                samples["digest"].append(row[3])
                samples["reference"].append(f"registry.example/team/app{row[4]}:{row[5]}")
        for j in rng.sample(digests_with_platforms, 100):
            samples["platform"].append(sha(j, "a"))
        counts: Dict[int, int] = {}
        for row in push_rows:
            counts[row[2]] = counts.get(row[2], 0) + 1
        by_id = {v: k for k, v in reference_ids.items()}
        top = sorted(counts, key=counts.get, reverse=True)[:20]
        samples["busiest reference"] = [f"registry.example/team/app{by_id[r][0]}:{by_id[r][1]}" for r in top]
        samples["busiest digest"] = [sha(m, "e") for m in range(MIRROR_DIGESTS)]
        samples["max pushes per reference"] = [str(counts[top[0]])]
    return samples


def next_pages(base: str, key: str, paths: Sequence[str]) -> List[str]:
    """The second page of each trail: ``before=`` its first page's ``next`` cursor."""
    host = urlsplit(base)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
    pages = []
    for path in paths:
        conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
        cursor = json.loads(conn.getresponse().read())["next"]
        pages.append(f"{path}{'&' if '?' in path else '?'}before={quote(cursor)}")
    return pages


def http_latencies(base: str, key: str, paths: Sequence[str], *, trail: bool = True) -> List[float]:
    """Wall time of each GET over one keep-alive connection (each answer checked: 200, and pushes for a trail)."""
    host = urlsplit(base)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
    headers = {"Authorization": f"Bearer {key}"}
    times = []
    # This client's own collector passes are not the server's latency: with it running, 18 full passes of up to
    # 49 ms each fell inside timed requests of one run (the answers' JSON keeps the collector busy).
    with paused_gc():
        for path in paths:
            start = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            times.append(time.perf_counter() - start)
            if response.status != 200 or (trail and not json.loads(payload)["pushes"]):
                raise RuntimeError(f"GET {path}: HTTP {response.status} {payload[:200]!r}")
    return times


def sql_latencies(dsn: str, digests: Sequence[str]) -> List[float]:
    """The floor: the pushes of a digest by the (digest, pushed_at) index, nothing joined."""
    times = []
    with psycopg.connect(dsn) as conn, paused_gc():
        for d in digests:
            start = time.perf_counter()
            rows = conn.execute("SELECT id, job_id, reference_id, pushed_at FROM pushes WHERE digest = %s "
                                "ORDER BY pushed_at DESC LIMIT 500", (d,)).fetchall()
            times.append(time.perf_counter() - start)
            assert rows
    return times


def fmt(values: List[float]) -> Tuple[str, str]:
    return f"{statistics.median(values) * 1000:.2f} ms", f"{percentile(values, 0.99) * 1000:.2f} ms"


def _write_elsewhere(path: Path, name: str, title: str, rows, notes) -> None:
    """``write_results`` into ``path``: it writes under the repository's benchmarks/results, so it is pointed
    at a scratch tree for the call."""
    import bench_ingest

    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "benchmarks" / "results").mkdir(parents=True)
        saved, bench_ingest.ROOT = bench_ingest.ROOT, Path(scratch)
        try:
            write_results(name, title, rows, notes)
        finally:
            bench_ingest.ROOT = saved
        shutil.copyfile(Path(scratch) / "benchmarks" / "results" / f"{name}.md", path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pushes", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--before-src", default="", help="also measure a server from this source tree")
    parser.add_argument("--output", default="", help="write the results to this file, not benchmarks/results/")
    parser.add_argument("--keep-schema", action="store_true", help="leave the loaded schema for EXPLAIN")
    args = parser.parse_args(argv)
    with fresh_schema(keep=args.keep_schema) as url:
        migrate(url)
        started = time.perf_counter()
        samples = load(libpq_dsn(url), args.pushes)
        load_seconds = time.perf_counter() - started
        key = api_key(url)
        digest_paths = [f"/v1/images/{d}/trail" for d in samples["digest"][:args.queries]]
        reference_paths = [f"/v1/trail?reference={quote(r)}" for r in samples["reference"][:args.queries]]
        busy_references = [f"/v1/trail?reference={quote(r)}" for r in samples["busiest reference"]]
        busy_digests = [f"/v1/images/{d}/trail" for d in samples["busiest digest"]]
        queries = {
            "GET /v1/images/{digest}/trail": digest_paths,
            "GET /v1/trail?reference= (registry/repo:tag)": reference_paths,
            "GET /v1/images/{platform digest}/trail (via its index)":
                [f"/v1/images/{d}/trail" for d in samples["platform"]],
            "GET /v1/trail?reference= (20 busiest tags, first page)": busy_references * 3,
            "GET /v1/images/{digest}/trail (20 busiest digests, first page)": busy_digests * 3,
            "GET /v1/trail?reference= (20 busiest tags, limit=500)":
                [f"{p}&limit=500" for p in busy_references] * 3,
            "GET /v1/images/{digest}/trail (20 busiest digests, limit=500)":
                [f"{p}?limit=500" for p in busy_digests] * 3,
        }
        measured: Dict[str, List[float]] = {}
        # A server without paging ignores limit/before (it answers up to 500 pushes), so its
        # "first page" rows are its whole answers and it has no second-page rows.
        for label, src in (("before: ", args.before_src), ("", "")) if args.before_src else (("", ""),):
            with serve(url, 1, src) as (base, _):
                http_latencies(base, key, digest_paths[:50] + reference_paths[:50])  # warm-up: pools, caches
                runs = dict(queries)
                if not src:
                    runs["GET /v1/trail?reference= (20 busiest tags, second page by cursor)"] = \
                        next_pages(base, key, busy_references) * 3
                    runs["GET /v1/images/{digest}/trail (20 busiest digests, second page by cursor)"] = \
                        next_pages(base, key, busy_digests) * 3
                if not src:  # the HTTP stack alone: a route that reads nothing, on the same connection kind
                    measured["GET /healthz (HTTP floor: the server's fixed cost per request)"] = http_latencies(
                        base, key, ["/healthz"] * args.queries, trail=False)
                for name, paths in runs.items():
                    measured[label + name] = http_latencies(base, key, paths)
        floor = sql_latencies(libpq_dsn(url), samples["digest"][:args.queries])
    floor_p50, floor_p99 = fmt(floor)
    rows = [("measure", "p50", "p99", "p99 / floor p99")]
    rows.append(("plain indexed SELECT of a digest's pushes (floor)", floor_p50, floor_p99, "1.0"))
    for name, values in measured.items():
        p50, p99 = fmt(values)
        rows.append((name, p50, p99, f"{percentile(values, 0.99) / percentile(floor, 0.99):.1f}"))
    write = write_results if not args.output else partial(_write_elsewhere, Path(args.output))
    write("bench_trace", f"Trace latency on PostgreSQL, {args.pushes:,} stored pushes", rows, [
        f"{args.pushes:,} pushes ({args.pushes // 2:,} jobs and reports, {ORGS} organisations, "
        f"{ORGS * PROJECTS_PER_ORG * PIPELINES_PER_PROJECT:,} pipelines, {REPOSITORIES:,} image repositories of "
        f"very unequal popularity: the busiest tag has {samples['max pushes per reference'][0]} pushes) loaded with "
        f"COPY in {load_seconds:.0f} s. Over HTTP with an admin API key, one keep-alive connection, "
        "`imagetrail serve` with 1 worker; queries drawn from the stored pushes.",
        "One machine with 2 cores shared by the client, the server and PostgreSQL. Target: p99 < 20 ms.",
        f"Load average over the last minute before writing: {os.getloadavg()[0]:.1f} (other work on the machine "
        "competes for the same cores when it is above ~1).",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d}."])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
