"""The cluster and vulnerability columns copied onto running_containers, and the explorer's sort orders.

The explorer filters, sorts and counts on those copies alone, so every write path (sync, scan
ingest, a relation recorded later, a newer scan) must keep them equal to ``clusters`` and
``vulnerability_summaries``. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import gc
import json
from datetime import datetime, timezone

import pytest
from sqlalchemy import select, update

from imagetrail import severity as sev
from imagetrail.gc_pause import paused_gc
from imagetrail.ingest import cloud as store
from imagetrail.parsers.k8s_inventory import normalize
from imagetrail.parsers.scans import ParsedFinding, ParsedImage, ParsedReport, parse_report
from imagetrail.queries.explorer import run_query
from imagetrail.store.db import transaction
from imagetrail.store.models.cloud import Cluster, RunningContainer, VulnerabilitySummary
from imagetrail.views.filters import SORT_KEYS, ExplorerFilters
from tests.cloud import scenario
from tests.cloud.support import ADMIN, digest


def assert_copies_match(sessions) -> int:
    """Every running container's copied columns equal its cluster and its digest's summary."""
    with sessions() as session:
        rows = session.execute(
            select(RunningContainer, Cluster.name, VulnerabilitySummary)
            .join(Cluster, Cluster.id == RunningContainer.cluster_id)
            .outerjoin(VulnerabilitySummary, VulnerabilitySummary.digest == RunningContainer.digest)
        ).all()
    for container, cluster, summary in rows:
        expected = (
            (
                summary.max_severity,
                summary.critical,
                summary.high,
                summary.max_fixable_severity,
                summary.scan_id,
            )
            if summary is not None
            else (sev.NONE, 0, 0, sev.NONE, None)
        )
        copied = (
            container.max_severity,
            container.critical_count,
            container.high_count,
            container.max_fixable_severity,
            container.scan_id,
        )
        assert (container.cluster_name, copied) == (cluster, expected), container.pod
    return len(rows)


def test_copies_follow_sync_scan_newer_scan_and_late_relation(sessions):
    # Scan before the sync: the sync writes the copies.
    with transaction(sessions) as session:
        store.ingest_scan(
            session,
            parse_report(scenario.trivy_report(scenario.ALPINE, scenario.WEB, "2024-05-02T00:00:00Z"), "w"),
            "w",
        )
        store.replace_inventory(session, scenario.inventory())
    assert assert_copies_match(sessions) == 6
    web = select(RunningContainer).where(RunningContainer.pod == "web")
    with sessions() as session:
        assert session.execute(web).scalar_one().max_severity == sev.CRITICAL
    # Scan after the sync (through an index relation): scan ingest updates the running rows.
    with transaction(sessions) as session:
        store.ingest_scan(
            session,
            parse_report(scenario.trivy_report(scenario.CLAMAV, scenario.API_AMD64), "api.json"),
            "api.json",
        )
    # A newer scan of WEB with only medium findings replaces the copies.
    with transaction(sessions) as session:
        newer = scenario.trivy_report(
            scenario.ALPINE, scenario.WEB, "2024-07-01T00:00:00Z", severity="MEDIUM"
        )
        store.ingest_scan(session, parse_report(newer, "w2"), "w2")
    # A relation recorded after the scan carries its summary to the running TOOL index.
    manifest = "sha256:" + "7" * 64
    with transaction(sessions) as session:
        store.ingest_scan(
            session, parse_report(scenario.trivy_report(scenario.ALPINE, manifest), "m.json"), "m.json"
        )
        store.record_relations(session, [(scenario.TOOL, manifest, "linux", "arm64")], source="registry")
    assert assert_copies_match(sessions) == 6
    with sessions() as session:
        assert session.execute(web).scalar_one().max_severity == sev.MEDIUM
        tool = session.execute(select(RunningContainer).where(RunningContainer.pod == "tool")).scalar_one()
        assert (tool.max_severity, tool.critical_count) == (sev.CRITICAL, 1)
        api = session.execute(select(RunningContainer).where(RunningContainer.pod == "api")).scalar_one()
        assert (api.high_count, api.max_severity) == (8, sev.HIGH)


def _many_images(count: int) -> ParsedReport:
    images = [
        ParsedImage(
            artifact=f"registry.example.com/bulk/app{n}:1",
            digests=[digest(10_000 + n)],
            findings=[ParsedFinding(f"CVE-2024-{n}", "openssl", "3.0.1", "3.0.9", sev.HIGH + n % 2)],
        )
        for n in range(count)
    ]
    return ParsedReport(
        "trivy-k8s", "trivy", "0.50.0", None, datetime(2024, 5, 1, tzinfo=timezone.utc), images
    )


def test_a_sync_naming_more_digests_than_one_batch(sessions):
    count = 3 * store._IN_BATCH + 7
    with transaction(sessions) as session:
        store.ingest_scan(session, _many_images(count), "bulk.json")
    pods = [
        {
            "kind": "Pod",
            "metadata": {"name": f"app{n}", "namespace": f"ns{n % 7}"},
            "spec": {"containers": [{"name": "main", "image": f"registry.example.com/bulk/app{n}:1"}]},
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    {"name": "main", "imageID": f"registry.example.com/bulk/app{n}@{digest(10_000 + n)}"}
                ],
            },
        }
        for n in range(count + 20)  # the last 20 digests have no scan
    ]
    inventory = store.InventoryIn.model_validate_json(normalize(pods, "bulk", "file").to_json())
    with transaction(sessions) as session:
        assert store.replace_inventory(session, inventory).containers == count + 20
    assert assert_copies_match(sessions) == count + 20
    with sessions() as session:
        critical = run_query(session, ExplorerFilters(min_severity="critical"), ADMIN, page_size=5)
        unscanned = run_query(session, ExplorerFilters(), ADMIN, page=(count + 20) // 5, page_size=5)
    assert critical.total == count // 2 and {r.vulnerabilities.max_severity for r in critical.rows} == {
        "critical"
    }
    assert all(row.vulnerabilities is None for row in unscanned.rows)  # worst first: unscanned last


def test_refresh_rebuilds_copies_after_a_bulk_load(sessions):
    scenario.load(sessions)
    with transaction(sessions) as session:
        session.execute(
            update(RunningContainer.__table__).values(
                max_severity=0, critical_count=0, high_count=0, scan_id=None
            )
        )
    with pytest.raises(AssertionError):
        assert_copies_match(sessions)
    with transaction(sessions) as session:
        assert store.refresh_container_columns(session) == 6
    assert assert_copies_match(sessions) == 6


@pytest.fixture
def two_clusters(sessions):
    """The scenario estate synced as two clusters, so every sort has ties the identity must break."""
    scenario.load(sessions)
    dev = scenario.inventory().model_copy(update={"cluster": "dev"})
    with transaction(sessions) as session:
        store.replace_inventory(session, dev)
    return sessions


SORT_ORDER = {
    "-severity": lambda r: (-_rank(r), -_count(r, "critical"), -_count(r, "high")),
    "severity": lambda r: (_rank(r), _count(r, "critical"), _count(r, "high")),
    "cluster": lambda r: (),
    "namespace": lambda r: (r.namespace,),
    "workload": lambda r: (r.workload_name,),
    "image": lambda r: (r.image,),
    "digest": lambda r: (r.digest,),
}


def _rank(row) -> int:
    return sev.rank(row.vulnerabilities.max_severity) if row.vulnerabilities else 0


def _count(row, name: str) -> int:
    return getattr(row.vulnerabilities.counts, name) if row.vulnerabilities else 0


@pytest.mark.parametrize("sort", SORT_KEYS)
def test_every_sort_pages_through_one_total_order(two_clusters, sort):
    with two_clusters() as session:
        whole = run_query(session, ExplorerFilters(), ADMIN, page_size=100, sort=sort)
        pages = [
            run_query(session, ExplorerFilters(), ADMIN, page=n, page_size=5, sort=sort) for n in (1, 2, 3)
        ]
    assert whole.total == 12 and [p.total for p in pages] == [12, 12, 12]
    identity = [(r.cluster, r.namespace, r.workload_name, r.pod, r.container) for r in whole.rows]
    assert [(r.cluster, r.pod) for p in pages for r in p.rows] == [(r.cluster, r.pod) for r in whole.rows]
    comparable = [r for r in whole.rows if r.digest is not None] if sort == "digest" else whole.rows
    keys = [(*SORT_ORDER[sort](r), r.cluster, r.namespace, r.workload_name, r.pod) for r in comparable]
    assert keys == sorted(keys)
    assert len(set(identity)) == 12 and {r.cluster for r in whole.rows} == {"dev", "prod"}


@pytest.mark.parametrize("sort", SORT_KEYS)
def test_cursors_page_forward_and_back_through_the_same_rows_as_page_numbers(two_clusters, sort):
    def identity(page):
        return [(r.cluster, r.namespace, r.pod, r.container) for r in page.rows]

    with two_clusters() as session:
        numbered = [
            run_query(session, ExplorerFilters(), ADMIN, page=n, page_size=5, sort=sort) for n in (1, 2, 3)
        ]
        forward = [numbered[0]]
        for n in (2, 3):
            previous = forward[-1]
            # A NULL digest has no place to seek from: the digest sort pages by number.
            assert (previous.next_cursor is None) == (sort == "digest")
            forward.append(
                run_query(session, ExplorerFilters(), ADMIN, n, 5, sort, after=previous.next_cursor)
            )
        back = run_query(
            session, ExplorerFilters(), ADMIN, page=2, page_size=5, sort=sort, before=forward[2].prev_cursor
        )
    assert [identity(p) for p in forward] == [identity(p) for p in numbered]
    assert identity(back) == identity(numbered[1]) and back.total == 12
    assert forward[2].next_cursor is None and len(forward[2].rows) == 2  # the last page: nothing after it
    assert numbered[0].prev_cursor is None


def test_a_cursor_of_another_sort_or_a_forged_one_is_refused_naming_the_parameter(two_clusters):
    with two_clusters() as session:
        cursor = run_query(session, ExplorerFilters(), ADMIN, page_size=5, sort="workload").next_cursor
        assert cursor
        with pytest.raises(ValueError, match="^after: not a cursor of this explorer listing sorted by 'clu"):
            run_query(session, ExplorerFilters(), ADMIN, page=2, page_size=5, sort="cluster", after=cursor)
        with pytest.raises(ValueError, match="^before: not a cursor"):
            run_query(session, ExplorerFilters(), ADMIN, page=2, page_size=5, sort="workload", before="%%%")
        forged = base64.urlsafe_b64encode(json.dumps(["workload", [1, 2, 3, 4, 5, 6]]).encode()).decode()
        with pytest.raises(ValueError, match="^after: not a cursor"):
            run_query(session, ExplorerFilters(), ADMIN, page=2, page_size=5, sort="workload", after=forged)
        with pytest.raises(ValueError, match="give one cursor"):
            run_query(session, ExplorerFilters(), ADMIN, page=2, sort="workload", after=cursor, before=cursor)


def test_paused_gc_nests_and_restores_the_previous_state():
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer holder still pauses it
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # it was off before: left off
    finally:
        gc.enable()


def test_web_explorer_next_and_previous_links_carry_cursors_and_show_the_numbered_pages(sessions):
    """Ten clusters of six containers: three pages of 25, walked by the links the page renders."""
    from urllib.parse import parse_qsl, urlsplit

    from imagetrail.web import explorer_view

    scenario.load(sessions)
    for n in range(9):
        with transaction(sessions) as session:
            store.replace_inventory(session, scenario.inventory().model_copy(update={"cluster": f"c{n}"}))

    def page(params):
        query = explorer_view.ExplorerRequest.from_params(params)
        assert query.errors == []
        with sessions() as session:
            result = explorer_view.run(session, ADMIN, query)
        return result, explorer_view.context(query, result)

    def params(href):
        return dict(parse_qsl(urlsplit(href).query))

    for sort in ("-severity", "workload"):
        numbered = [
            page({"sort": sort, "page": str(n), "page_size": "25", "running": "true"})[0] for n in (1, 2, 3)
        ]
        assert numbered[0].total == 60
        walked, links = [], {"sort": sort, "page_size": "25", "running": "true"}
        for _ in range(3):
            result, ctx = page(links)
            walked.append(result)
            if ctx["next_href"]:
                links = params(ctx["next_href"])
                assert "after" in links
        assert ctx["next_href"] is None and [r.page for r in walked] == [1, 2, 3]
        back, back_ctx = page(params(ctx["prev_href"]))
        assert "before" in params(ctx["prev_href"]) and back.page == 2

        def pods(results):
            return [[(r.cluster, r.pod) for r in p.rows] for p in results]

        assert pods(walked) == pods(numbered) and pods([back]) == pods(numbered[1:2])
        assert back_ctx["first_row"] == 26


def test_api_query_links_the_neighbouring_pages_with_their_cursors(api):
    """GET /v1/query answers with an RFC 8288 Link header; following it gives the numbered pages."""
    scenario.load(api.app.state.sessions)

    def pods(response):
        assert response.status_code == 200, response.text
        return [row["pod"] for row in response.json()["rows"]]

    listing = {"sort": "workload", "page_size": 2, "running": "true"}
    numbered = [pods(api.client.get("/v1/query", params={**listing, "page": n})) for n in (1, 2, 3)]
    response = api.client.get("/v1/query", params=listing)
    walked = [pods(response)]
    while "next" in response.links:
        response = api.client.get(response.links["next"]["url"])
        walked.append(pods(response))
    assert walked == numbered and len(sum(numbered, [])) == 6
    previous = response.links["prev"]["url"]
    assert previous.startswith("/v1/query?") and "before=" in previous and "after=" not in previous
    assert pods(api.client.get(previous)) == numbered[1]
    refused = api.client.get("/v1/query", params={"sort": "cluster", "page": 2, "after": "bm90"})
    assert refused.status_code == 422 and refused.json()["detail"].startswith("after: not a cursor")
