"""Vulnerable images no cluster runs: explorer rows, the running filter, and pushes by pipeline.

Real Trivy and Grype reports (tests/fixtures/cloud) through the real ingest, sync and scan paths, on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from imagetrail.ingest import cloud as store
from imagetrail.ingest.reports import ingest_report
from imagetrail.parsers.scans import parse_report
from imagetrail.queries.explorer import run_query
from imagetrail.queries.pipeline_risk import vulnerable_pushes_by_pipeline
from imagetrail.store.db import transaction
from imagetrail.views.filters import ExplorerFilters
from tests.cloud import scenario
from tests.cloud.support import ADMIN, FIXTURES, digest, ingester, pipeline_report, push, reader

GRYPE = "grype_chainguard-ruby_image.json"
# The manifest digest the Grype report scanned (source.target.manifestDigest): 3 High findings.
RUBY = json.loads((FIXTURES / GRYPE).read_bytes())["source"]["target"]["manifestDigest"]
OLD = digest(8)  # pushed long ago, Trivy: 1 critical
NOW = datetime(2024, 6, 12, tzinfo=timezone.utc)


@pytest.fixture
def estate(sessions):
    """The scenario's estate, plus two images contoso/shop pushed that no cluster runs."""
    scenario.load(sessions)
    body = pipeline_report(
        "contoso",
        "shop",
        "103",
        [
            push(f"{scenario.REGISTRY}/shop/ruby:3", RUBY, "2024-06-10T08:00:00Z"),
            push(f"{scenario.REGISTRY}/shop/old:1", OLD, "2024-04-01T08:00:00Z"),
        ],
    )
    ingest_report(sessions, body, ingester())
    for name, data in (
        (GRYPE, (FIXTURES / GRYPE).read_bytes()),
        ("old.json", scenario.trivy_report(scenario.ALPINE, OLD, "2024-04-02T00:00:00Z")),
    ):
        with transaction(sessions) as session:
            store.ingest_scan(session, parse_report(data, name), name)
    return sessions


def query(sessions, principal=ADMIN, page=1, page_size=100, **filters):
    with sessions() as session:
        return run_query(session, ExplorerFilters(**filters), principal, page=page, page_size=page_size)


def test_not_running_images_are_rows_with_their_scan_and_trail(estate):
    page = query(estate, running=False)
    assert page.total == 2
    by_digest = {row.digest: row for row in page.rows}
    assert set(by_digest) == {RUBY, OLD}
    ruby = by_digest[RUBY]
    assert (ruby.running, ruby.cluster, ruby.exposed) == (False, None, False)
    assert (ruby.registry, ruby.repository, ruby.image) == (
        scenario.REGISTRY,
        "shop/ruby",
        f"{scenario.REGISTRY}/shop/ruby:3",
    )
    assert ruby.vulnerabilities.counts.high == 3 and ruby.vulnerabilities.scanner == "grype"
    assert (ruby.trail.run_id, ruby.trail.pipeline_id) == ("103", "7")
    # Worst first: the old image's critical finding ranks above the ruby image's highs.
    assert [row.digest for row in page.rows] == [OLD, RUBY]


def test_running_filter_and_the_default_lists_both_kinds(estate):
    running = query(estate, running=True)
    assert running.total == 6 and all(row.running for row in running.rows)
    both = query(estate)
    assert both.total == 8
    assert [row.running for row in both.rows] == [True] * 6 + [False] * 2
    # Paged as one list: the pages put together are the whole list, in order.
    pages = [query(estate, page=n, page_size=3).rows for n in (1, 2, 3)]
    assert [(r.pod, r.digest) for p in pages for r in p] == [(r.pod, r.digest) for r in both.rows]
    assert [len(p) for p in pages] == [3, 3, 2]


def test_filters_apply_to_images_that_are_not_running(estate):
    assert [r.digest for r in query(estate, running=False, min_severity="critical").rows] == [OLD]
    assert [r.digest for r in query(estate, running=False, cve="cve-2023-28755").rows] == [RUBY]
    assert [r.digest for r in query(estate, running=False, repository="shop/ruby").rows] == [RUBY]
    assert [r.digest for r in query(estate, running=False, pushed_after=datetime(2024, 6, 1)).rows] == [RUBY]
    assert query(estate, running=False, org="fabrikam").total == 0
    # An image no cluster runs is never exposed, in no cluster and no namespace.
    assert query(estate, running=False, exposed=True).total == 0
    assert query(estate, running=False, cluster="prod").total == 0
    assert query(estate, exposed=False, running=False).total == 2


def test_readers_see_only_their_organisations_images(estate):
    assert query(estate, principal=reader("fabrikam"), running=False).total == 0
    assert query(estate, principal=reader("contoso"), running=False).total == 2


def test_vulnerable_pushes_by_pipeline(estate):
    with estate() as session:
        week = vulnerable_pushes_by_pipeline(session, ADMIN, 7, now=NOW)
        two_months = vulnerable_pushes_by_pipeline(session, ADMIN, 60, now=NOW)
        critical = vulnerable_pushes_by_pipeline(
            session, ADMIN, 90, ExplorerFilters(min_severity="critical"), now=NOW
        )
        not_running = vulnerable_pushes_by_pipeline(
            session, ADMIN, 90, ExplorerFilters(running=False), now=NOW
        )
        fabrikam = vulnerable_pushes_by_pipeline(session, reader("fabrikam"), 90, now=NOW)
    (shop,) = week.pipelines
    assert (shop.organization, shop.project, shop.pipeline_id) == ("contoso", "shop", "7")
    assert (shop.images, shop.running, shop.not_running, shop.critical, shop.high) == (1, 0, 1, 0, 3)
    assert week.min_severity == "high"
    # 60 days: web (critical, running), the api index (8 high, its platform manifest runs) and ruby.
    # pay/svc has only medium findings; the old image was pushed before the window.
    (shop,) = two_months.pipelines
    assert (shop.images, shop.running, shop.not_running, shop.critical, shop.high) == (3, 2, 1, 1, 11)
    (shop,) = critical.pipelines
    assert (shop.images, shop.critical) == (2, 2)  # web and the old image
    (shop,) = not_running.pipelines
    assert (shop.images, shop.not_running) == (2, 2)
    assert fabrikam.pipelines == []
    with pytest.raises(ValueError, match="days must be between"):
        with estate() as session:
            vulnerable_pushes_by_pipeline(session, ADMIN, 0)


def _recent_push_estate(post) -> None:
    """Through the API: a contoso/shop push of the Grype-scanned image an hour ago, no cluster running it."""
    pushed_at = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    pushes = [push(f"{scenario.REGISTRY}/shop/ruby:4", RUBY, pushed_at)]
    assert post("/v1/reports", json=pipeline_report("contoso", "shop", "104", pushes)).status_code == 201
    scan = (FIXTURES / GRYPE).read_bytes()
    assert post("/v1/scans", params={"file_name": GRYPE}, content=scan).status_code == 201


def test_api_and_web_offer_the_running_filter_and_the_pipelines_query(api):
    from imagetrail.web.session import WebSession, web_reader

    api.app.dependency_overrides[web_reader] = lambda: WebSession(api.principal, "csrf", via_cookie=False)
    _recent_push_estate(api.client.post)
    rows = api.client.get("/v1/query", params={"running": "false"}).json()["rows"]
    assert [(r["running"], r["digest"], r["cluster"]) for r in rows] == [(False, RUBY, None)]
    assert api.client.get("/v1/query", params={"running": "true"}).json()["total"] == 0
    assert api.client.get("/v1/query", params={"running": "maybe"}).status_code == 422
    answer = api.client.get("/v1/query/pipelines", params={"days": 2}).json()
    assert [(p["pipeline"], p["images"], p["not_running"], p["high"]) for p in answer["pipelines"]] == [
        ("shop-ci", 1, 1, 3)
    ]
    assert api.client.get("/v1/query/pipelines", params={"days": 0}).status_code == 422
    refused = api.client.get("/v1/query/pipelines", params={"exposed": "true"})
    assert refused.status_code == 422 and "exposed" in refused.json()["detail"]

    page = api.client.get("/explorer", params={"running": "false"})
    assert page.status_code == 200 and "not running" in page.text and "shop/ruby:4" in page.text
    csv_text = api.client.get("/explorer.csv", params={"running": "false"}).text
    header, line = (next(csv.reader([text])) for text in csv_text.splitlines()[:2])
    assert line[header.index("running")] == "no"
    assert (line[header.index("owner_source")], line[header.index("owners")]) == ("requester", "Dev Eloper (requester)")
    pipelines = api.client.get("/explorer/pipelines", params={"days": "2"})
    assert pipelines.status_code == 200 and "shop-ci" in pipelines.text and "H 3" in pipelines.text
    assert "pipeline=7" in pipelines.text  # the link to the explorer names the pipeline
    bad = api.client.get("/explorer/pipelines", params={"days": "many"})
    assert bad.status_code == 400 and "days: expected a whole number" in bad.text
    api.act_as(reader("fabrikam"))
    assert api.client.get("/v1/query/pipelines", params={"days": 2}).json()["pipelines"] == []


@pytest.mark.e2e
def test_cli_running_filter_and_pipelines_against_the_real_server(database_url):
    import os
    import subprocess
    import sys

    import requests

    from tests.cloud.test_k8s_live_and_cli import REPO_ROOT
    from tests.support.live_server import running_server

    path = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "IMAGETRAIL_DATABASE_URL": database_url, "PYTHONPATH": path}

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "imagetrail", *args], env=env, capture_output=True, text=True, timeout=120
        )

    with running_server(database_url, env=env) as url:
        created = cli("keys", "create", "--org", "*", "--scope", "admin")
        assert created.returncode == 0, created.stderr
        env.update(IMAGETRAIL_URL=url, IMAGETRAIL_API_KEY=created.stdout.strip())
        headers = {"Authorization": f"Bearer {env['IMAGETRAIL_API_KEY']}"}
        _recent_push_estate(
            lambda path, content=None, **kw: requests.post(
                url + path, data=content, headers=headers, timeout=30, **kw
            )
        )
        rows = json.loads(cli("query", "--not-running", "--json").stdout)["rows"]
        assert [(r["running"], r["digest"]) for r in rows] == [(False, RUBY)]
        assert json.loads(cli("query", "--running", "--json").stdout)["total"] == 0
        table = cli("query", "--by-pipeline", "--days", "2")
        assert table.returncode == 0, table.stderr
        header, line = table.stdout.splitlines()[:2]
        assert header.split()[:4] == ["ORGANIZATION", "PROJECT", "PIPELINE", "IMAGES"]
        assert line.split()[:8] == ["contoso", "shop", "shop-ci", "1", "0", "1", "0", "3"]
        both = cli("query", "--running", "--not-running")
        assert both.returncode == 2 and "not allowed with argument" in both.stderr


def _assert_listing_is_the_rule(sessions):
    """Images not running as ``pushed_digests`` lists them (filled or not) = every push checked against the
    running containers (the rule it stands in for), for the list and for the explorer's total. A reader of one
    organisation gets those of them its organisation pushed, itself or as a relative (``digest_organizations``,
    the rule its running containers follow): at least every digest a run of its own pushed."""
    from imagetrail.queries.explorer import _not_running_digests, pushed_images
    from imagetrail.store.models.pipeline import DigestOrganization, Organization

    with sessions() as session:
        listed = set(session.execute(_not_running_digests(session, ExplorerFilters(), ADMIN)).scalars())
        rule = set(session.execute(pushed_images(ExplorerFilters(running=False), ADMIN).distinct()).scalars())
        high = set(session.execute(
            _not_running_digests(session, ExplorerFilters(min_severity="high"), ADMIN)).scalars())
        rule_high = set(session.execute(
            pushed_images(ExplorerFilters(running=False, min_severity="high"), ADMIN).distinct()).scalars())
    assert listed == rule and high == rule_high
    assert query(sessions, running=False).total == len(rule)
    _assert_pages_are_worst_first(sessions, ADMIN, rule)
    for organization in ("contoso", "fabrikam"):  # contoso pushed the images no cluster runs, fabrikam none
        principal = reader(organization)
        with sessions() as session:
            theirs = set(session.execute(
                select(DigestOrganization.digest)
                .join(Organization, Organization.id == DigestOrganization.organization_id)
                .where(Organization.name == organization)).scalars())
            listed = set(session.execute(_not_running_digests(session, ExplorerFilters(), principal)).scalars())
            pushed = set(session.execute(
                pushed_images(ExplorerFilters(running=False), principal).distinct()).scalars())
        assert listed == rule & theirs and pushed <= listed
        assert query(sessions, principal, running=False).total == len(listed)
        _assert_pages_are_worst_first(sessions, principal, listed)


def _assert_pages_are_worst_first(sessions, principal, listed):
    """With a vulnerability filter the page is read from the summaries in severity order: it lists the images
    not running that have such a summary (of ``listed``), worst first (or best first), the digest breaking ties,
    as the summaries say, and its total counts them."""
    from imagetrail.store.models.cloud import VulnerabilitySummary as vs

    with sessions() as session:
        summaries = {d: (worst, critical, high) for d, worst, critical, high in session.execute(
            select(vs.digest, vs.max_severity, vs.critical, vs.high).where(vs.max_severity >= 2))}
        for sort, worst_first in (("-severity", True), ("severity", False)):
            page = run_query(session, ExplorerFilters(running=False, min_severity="low"), principal,
                             page_size=100, sort=sort)
            wanted = sorted((d for d in listed if d in summaries),
                            key=lambda d: (tuple(-n if worst_first else n for n in summaries[d]), d))
            assert [row.digest for row in page.rows] == wanted and page.total == len(wanted), sort
            assert all(row.running is False for row in page.rows)


def _running_flags(sessions) -> dict:
    from imagetrail.store.models.cloud import PushedDigest

    with sessions() as session:
        return dict(session.execute(select(PushedDigest.digest, PushedDigest.running)).all())


def test_pushed_digests_follow_syncs_relations_and_pushes(estate):
    """The maintained list of pushed digests (and whether they run) stays the rule: unknown after a sync or a
    relation changes what runs, filled after the sync; a new push is listed at once."""
    _assert_listing_is_the_rule(estate)
    with transaction(estate) as session:
        store.fill_after_sync(session, "prod")
    flags = _running_flags(estate)
    assert None not in flags.values() and flags[RUBY] is False and flags[scenario.WEB] is True
    _assert_listing_is_the_rule(estate)
    # The web pod goes: its digest may have stopped running (unknown), then it is filled as not running.
    with transaction(estate) as session:
        store.replace_inventory(session, scenario.inventory(include_web=False))
    assert _running_flags(estate)[scenario.WEB] is None
    _assert_listing_is_the_rule(estate)
    with transaction(estate) as session:
        store.fill_after_sync(session, "prod")
    assert _running_flags(estate)[scenario.WEB] is False
    _assert_listing_is_the_rule(estate)
    # RUBY turns out to be a platform manifest of an index a cluster runs: it runs now.
    with transaction(estate) as session:
        store.record_relations(session, [(scenario.SVC, RUBY, "linux", "amd64")], source="registry")
    _assert_listing_is_the_rule(estate)
    with transaction(estate) as session:
        store.fill_after_sync(session, "prod")
    assert _running_flags(estate)[RUBY] is True
    _assert_listing_is_the_rule(estate)
    # A new push is listed (unknown until the next fill) at once.
    fresh = digest(77)
    ingest_report(estate, pipeline_report("contoso", "shop", "140", [push(f"{scenario.REGISTRY}/shop/new:1", fresh)]),
                  ingester())
    assert _running_flags(estate)[fresh] is None
    _assert_listing_is_the_rule(estate)
