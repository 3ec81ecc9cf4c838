"""Explorer query speed on PostgreSQL: exposed AND high-or-critical, over a bulk-loaded estate.

Full scale (--scale 1): 100,000 running containers, 1,000,000 pushes, 5,000,000 findings, loaded
with COPY from in-memory buffers. Prints p50/p99 of the explorer query (first page of 50, total
count included) next to a plain indexed lookup (one push by digest) measured in the same run,
and writes benchmarks/results/bench_query.md. Target: explorer p99 < 500 ms.

    python3 benchmarks/bench_query.py [--scale 0.1] [--database-url postgresql+psycopg://...] [--output FILE]
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import sqlalchemy as sa  # noqa: E402
from bench_ingest import settle  # noqa: E402

from imagetrail.auth import Principal  # noqa: E402
from imagetrail.gc_pause import tune_for_serving  # noqa: E402
from imagetrail.ingest.cloud import refresh_container_columns  # noqa: E402
from imagetrail.ingest.digest_organizations import rebuild_digest_organizations  # noqa: E402
from imagetrail.ingest.running_images import rebuild_pushed_digests  # noqa: E402
from imagetrail.queries.explorer import run_query  # noqa: E402
from imagetrail.queries.pipeline_risk import vulnerable_pushes_by_pipeline  # noqa: E402
from imagetrail.store.db import make_engine, make_sessionmaker, transaction  # noqa: E402
from imagetrail.store.migrate import upgrade  # noqa: E402
from imagetrail.views.filters import ExplorerFilters  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ADMIN = Principal(kind="api-key", subject="bench", scopes=frozenset({"admin"}), organizations=None)
READER = Principal(
    kind="api-key", subject="bench", scopes=frozenset({"read"}), organizations=frozenset({"org1"})
)


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def copy_rows(raw, table: str, columns: str, rows) -> None:
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join("\\N" if v is None else str(v) for v in row))
        buffer.write("\n")
    with raw.cursor() as cursor:
        with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            copy.write(buffer.getvalue())


def load(engine, scale: float) -> dict:
    containers, pushes, findings = int(100_000 * scale), int(1_000_000 * scale), int(5_000_000 * scale)
    runs = max(pushes // 10, 1)
    scanned = findings // 25
    rng = random.Random(7)
    now = "2024-06-01 00:00:00+00"
    raw = engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        copy_rows(
            dbapi, "organizations", "id, system, name", [(i, "azure-devops", f"org{i}") for i in range(1, 11)]
        )
        copy_rows(
            dbapi, "projects", "id, organization_id, name", [(i, i % 10 + 1, f"p{i}") for i in range(1, 101)]
        )
        copy_rows(
            dbapi,
            "pipelines",
            "id, project_id, external_id, name",
            [(i, i % 100 + 1, str(i), f"pl{i}") for i in range(1, 1001)],
        )
        copy_rows(
            dbapi,
            "people",
            "id, organization_id, key, name, email",
            [(i, i % 10 + 1, f"u{i}@x", f"U {i}", f"u{i}@x") for i in range(1, 1001)],
        )
        copy_rows(
            dbapi,
            "runs",
            "id, pipeline_id, external_id, attempt, commit, branch, requester_id",
            (
                (i, i % 1000 + 1, str(i), 1, f"{i:040x}", "refs/heads/main", i % 1000 + 1)
                for i in range(1, runs + 1)
            ),
        )
        copy_rows(
            dbapi, "jobs", "id, run_id, external_id, attempt", ((i, i, "j", 1) for i in range(1, runs + 1))
        )
        copy_rows(
            dbapi,
            "reports",
            "id, schema_version, received_at, identity_kind, identity_subject, job_id, body",
            ((f"r{i}", "1.0", now, "api-key", "bench", i, "{}") for i in range(1, runs + 1)),
        )
        copy_rows(
            dbapi,
            "image_references",
            "id, registry, repository, tag",
            ((i, "acr.example.io", f"team/app{i}", "1") for i in range(1, runs + 1)),
        )
        copy_rows(dbapi, "images", "digest, first_seen_at", ((digest(i), now) for i in range(1, pushes + 1)))
        copy_rows(
            dbapi,
            "pushes",
            "id, report_id, job_id, reference_id, digest, reference, pushed_at, labels",
            (
                (
                    i,
                    f"r{(i - 1) // 10 + 1}",
                    (i - 1) // 10 + 1,
                    (i - 1) // 10 + 1,
                    digest(i),
                    f"acr.example.io/team/app{(i - 1) // 10 + 1}:1",
                    now,
                    "{}",
                )
                for i in range(1, pushes + 1)
            ),
        )
        copy_rows(
            dbapi,
            "image_scans",
            "id, scanner, scanned_at, received_at, file_name, digests, finding_count",
            ((i, "trivy", now, now, "bench.json", "[]", 25) for i in range(1, scanned + 1)),
        )
        copy_rows(
            dbapi,
            "vulnerability_findings",
            "id, scan_id, vulnerability_id, package, installed_version, fixed_version, severity",
            (
                (
                    i,
                    (i - 1) // 25 + 1,
                    f"CVE-2024-{i % 50000}",
                    "pkg",
                    "1.0",
                    "1.1" if i % 3 else None,
                    rng.choice((1, 2, 3, 3, 4, 5)) if i % 25 == 0 else 2,
                )
                for i in range(1, findings + 1)
            ),
        )
        # Summaries as scan ingest maintains them (counted here in SQL; ingest does it per scan).
        with dbapi.cursor() as cursor:
            cursor.execute(f"""
                INSERT INTO vulnerability_summaries (digest, via_digest, scan_id, scanned_at, critical, high,
                    medium, low, unknown, max_severity, max_fixable_severity, top)
                SELECT 'sha256:' || lpad(to_hex(scan_id * {max(pushes // max(scanned, 1), 1)}), 64, '0'),
                       'sha256:' || lpad(to_hex(scan_id * {max(pushes // max(scanned, 1), 1)}), 64, '0'),
                       scan_id, '{now}', count(*) FILTER (WHERE severity = 5),
                       count(*) FILTER (WHERE severity = 4), count(*) FILTER (WHERE severity = 3),
                       count(*) FILTER (WHERE severity = 2), count(*) FILTER (WHERE severity = 1),
                       max(severity),
                       coalesce(max(severity) FILTER (WHERE fixed_version IS NOT NULL), 0), '[]'
                FROM vulnerability_findings GROUP BY scan_id""")
        copy_rows(
            dbapi,
            "clusters",
            "id, name, source, synced_at, pod_count, container_count, warnings",
            [(i, f"c{i}", "live", now, containers // 10, containers // 10, "[]") for i in range(1, 11)],
        )
        copy_rows(
            dbapi,
            "running_containers",
            "id, cluster_id, cluster_name, namespace, pod, workload_kind, workload_name, container, "
            "container_kind, image, registry, repository, digest, exposed, exposure",
            (
                (
                    i,
                    i % 10 + 1,
                    f"c{i % 10 + 1}",
                    f"ns{i % 500}",
                    f"pod{i}",
                    "Deployment",
                    f"w{i % 5000}",
                    "main",
                    "container",
                    "acr.example.io/team/app:1",
                    "acr.example.io",
                    "team/app",
                    digest(rng.randint(1, pushes)),
                    "t" if i % 5 == 0 else "f",
                    '[{"reason": "Service x type=LoadBalancer", "address": "192.0.2.1"}]'
                    if i % 5 == 0
                    else "[]",
                )
                for i in range(1, containers + 1)
            ),
        )
        with dbapi.cursor() as cursor:
            # Statistics before the derived tables are computed from the loaded ones: with the empty-table
            # estimates of a new schema the planner nests loops over 100,000s of pushes (minutes, not seconds).
            cursor.execute("ANALYZE")
        dbapi.commit()
    finally:
        raw.close()
    # The containers' copied vulnerability columns and the digests' pushing organisations, as sync, scan and
    # report ingest would have written them.
    with transaction(make_sessionmaker(engine)) as session:
        refresh_container_columns(session)
        rebuild_digest_organizations(session)
        rebuild_pushed_digests(session)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    return {"containers": containers, "pushes": pushes, "findings": findings}


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def measure(fn, repeat: int):
    fn()  # warm the caches, as a server that has run a while has
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings), percentile(timings, 0.99)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--keep-schema", action="store_true", help="leave the loaded schema for EXPLAIN")
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "bench_query.md",
        help="where to write the table (a scratch file for runs that are not the record)",
    )
    args = parser.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(args.database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(f"{args.database_url}?options=-csearch_path%3D{schema}")
    try:
        upgrade(engine)
        started = time.perf_counter()
        sizes = load(engine, args.scale)
        load_seconds = time.perf_counter() - started
        timed_load = settle()  # the load above saturates both cores; the timed queries run alone
        sessions = make_sessionmaker(engine)
        # The queries run in this process: set up its collector as a serving process's startup does
        # (server/app.py), or a full collection over every imported object lands in some timed run (70-90 ms).
        tune_for_serving()
        filters = ExplorerFilters(exposed=True, min_severity="high")
        with sessions() as session:
            page = run_query(session, filters, ADMIN, page_size=50)

            def explorer():
                run_query(session, filters, ADMIN, page_size=50)

            def cve():
                run_query(session, ExplorerFilters(exposed=True, cve="CVE-2024-100"), ADMIN, page_size=50)

            def everything_worst_first():
                run_query(session, ExplorerFilters(), ADMIN, page_size=50, sort="-severity")

            deep_page = max(sizes["containers"] // 100, 1)  # page 1,000 of 50 at full scale

            def reader_exposed_high():
                run_query(session, filters, READER, page_size=50)

            def deep_by_workload():
                run_query(session, ExplorerFilters(), ADMIN, page=deep_page, page_size=50, sort="workload")

            probe = digest(12345 % max(sizes["pushes"], 1) + 1)

            def running_only_worst_first():
                run_query(session, ExplorerFilters(running=True), ADMIN, page_size=50, sort="-severity")

            def not_running_high():
                run_query(session, ExplorerFilters(running=False, min_severity="high"), ADMIN, page_size=50)

            def by_pipeline_week():
                vulnerable_pushes_by_pipeline(session, ADMIN, 7)

            def lookup():
                session.execute(sa.text("SELECT id FROM pushes WHERE digest = :d"), {"d": probe}).all()

            floor = measure(lookup, args.repeat * 5)
            results = [
                ("plain indexed lookup (pushes by digest)", *floor),
                ("explorer: exposed AND min-severity high", *measure(explorer, args.repeat)),
                ("explorer: exposed AND cve", *measure(cve, args.repeat)),
                (
                    "explorer: all rows (running, then not running), worst first",
                    *measure(everything_worst_first, args.repeat),
                ),
                ("explorer: running only, worst first", *measure(running_only_worst_first, args.repeat)),
                ("explorer: pushed, not running, high+", *measure(not_running_high, args.repeat)),
                ("pushes by pipeline, last 7 days, high+", *measure(by_pipeline_week, args.repeat)),
                (
                    f"explorer: all rows by workload, page {deep_page:,}",
                    *measure(deep_by_workload, args.repeat),
                ),
                (
                    "explorer: reader of 1 of 10 organisations, exposed AND high",
                    *measure(reader_exposed_high, args.repeat),
                ),
            ]
    finally:
        engine.dispose()
        if args.keep_schema:
            print(f"kept schema {schema}")
        else:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    lines = [
        f"# bench_query (scale {args.scale})",
        "",
        f"{sizes['containers']:,} running containers, {sizes['pushes']:,} pushes, "
        f"{sizes['findings']:,} findings on PostgreSQL; loaded in {load_seconds:.0f} s; "
        f"exposed AND high matched {page.total:,} rows (first page of 50 with the total count). "
        f"{args.repeat} runs each. Load average (1 min) when the timed queries began: {timed_load:.2f}.",
        "",
        "| query | p50 ms | p99 ms | p50 / floor | target |",
        "|---|---|---|---|---|",
    ]
    for name, p50, p99 in results:
        target = (
            "floor" if name.startswith("plain") else ("p99 < 500 ms: " + ("met" if p99 < 500 else "MISSED"))
        )
        lines.append(f"| {name} | {p50:.1f} | {p99:.1f} | {p50 / floor[0]:.0f}x | {target} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
