"""Store and explorer functions on SQLite and PostgreSQL, through the real write paths."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from imagetrail.ingest import cloud as store
from imagetrail.parsers.scans import parse_report
from imagetrail.queries.coverage import coverage_gaps, coverage_summary
from imagetrail.queries.explorer import run_query
from imagetrail.store.db import transaction
from imagetrail.store.models.cloud import ImageScan, RunningContainer, ScanDigest
from imagetrail.store.models.pipeline import Organization
from imagetrail.views.filters import ExplorerFilters
from tests.cloud import scenario
from tests.cloud.support import ADMIN, reader


@pytest.fixture
def estate(sessions):
    scenario.load(sessions)
    return sessions


def query(sessions, principal=ADMIN, **filters):
    with sessions() as session:
        return run_query(session, ExplorerFilters(**filters), principal, page_size=100)


def pods(page):
    return sorted(row.pod for row in page.rows)


def test_exposed_and_critical_row_carries_exposure_vulnerabilities_and_trail(estate):
    page = query(estate, exposed=True, min_severity="critical")
    assert page.total == 1
    (row,) = page.rows
    assert (row.cluster, row.namespace, row.pod, row.digest) == ("prod", "prod", "web", scenario.WEB)
    assert [e.reason for e in row.exposure] == ["Service prod/public type=LoadBalancer 203.0.113.10"]
    assert row.vulnerabilities.counts.critical == 1
    assert row.vulnerabilities.top[0].id == "CVE-2021-36159"
    assert row.vulnerabilities.top[0].fixed_version == "2.10.7-r0"
    assert row.vulnerabilities.scanner == "trivy"
    trail = row.trail
    assert (trail.organization, trail.project, trail.run_id, trail.branch) == (
        "contoso",
        "shop",
        "101",
        "refs/heads/main",
    )
    assert trail.commit.startswith("c0ffee") and trail.owner_email == "alice@contoso.example"
    assert trail.run_url.endswith("buildId=101")


def test_platform_manifest_running_matches_the_index_scan_and_push(estate):
    page = query(estate, min_severity="high")
    assert pods(page) == ["api", "web"]
    api = [row for row in page.rows if row.pod == "api"][0]
    assert api.digest == scenario.API_AMD64
    assert api.vulnerabilities.counts.high == 8 and api.vulnerabilities.counts.medium == 13
    assert api.vulnerabilities.scanned_digest == scenario.API_INDEX
    assert api.trail.pushed_digest == scenario.API_INDEX and api.trail.run_id == "101"


def test_filters_combine(estate):
    assert pods(query(estate, cve="cve-2021-36159")) == ["svc", "web"]
    assert pods(query(estate, cve="CVE-2021-36159", min_severity="critical")) == ["web"]
    assert pods(query(estate, fix_available=True, min_severity="critical")) == ["web"]
    assert pods(query(estate, org="contoso")) == ["api", "web"]
    assert pods(query(estate, project="pay")) == ["svc"]
    assert pods(query(estate, pipeline="shop-ci", exposed=True)) == ["web"]
    assert pods(query(estate, pushed_after=datetime(2024, 5, 15, tzinfo=timezone.utc))) == ["svc"]
    assert pods(query(estate, pushed_before=datetime(2024, 5, 1, 10, 0, 30, tzinfo=timezone.utc))) == ["web"]
    assert pods(query(estate, registry="docker.io")) == ["nginx"]
    assert pods(query(estate, repository="shop/web")) == ["web"]
    assert pods(query(estate, namespace="other")) == []
    assert query(estate).total == 6


def test_sorting_and_paging_happen_in_the_database(estate):
    with estate() as session:
        first = run_query(session, ExplorerFilters(), ADMIN, page=1, page_size=2, sort="-severity")
        second = run_query(session, ExplorerFilters(), ADMIN, page=2, page_size=2, sort="-severity")
        by_name = run_query(session, ExplorerFilters(), ADMIN, page=1, page_size=3, sort="workload")
    assert first.total == 6 and [r.pod for r in first.rows] == ["web", "api"]
    assert [r.pod for r in second.rows] == ["svc", "cfg"]  # medium, then unscanned ordered by name
    assert [r.pod for r in by_name.rows] == ["api", "cfg", "nginx"]
    with pytest.raises(ValueError, match="sort must be one of"):
        with estate() as session:
            run_query(session, ExplorerFilters(), ADMIN, sort="owner")


def test_reader_sees_only_granted_organisations_and_no_untraced_rows(estate):
    assert pods(query(estate, principal=reader("fabrikam"))) == ["svc"]
    assert pods(query(estate, principal=reader("contoso"), exposed=True)) == ["web"]
    with estate() as session:
        assert coverage_gaps(session, reader("contoso")).total == 0
        summary = coverage_summary(session, reader("contoso"))
    assert [p.project for p in summary.projects] == ["shop"] and summary.clusters == []


def test_coverage_gaps_say_why(estate):
    with estate() as session:
        page = coverage_gaps(session, ADMIN)
    reasons = {gap.workload_name: gap.reason for gap in page.gaps}
    assert reasons == {"nginx": "registry-not-pushed-to", "tool": "no-report", "cfg": "unknown-digest"}
    nginx = [g for g in page.gaps if g.workload_name == "nginx"][0]
    assert "docker.io" in nginx.detail and "outside Azure DevOps" in nginx.detail
    assert page.gaps[0].exposed  # exposed gaps first


def test_coverage_summary_lists_sources_and_times(estate):
    with estate() as session:
        summary = coverage_summary(session, ADMIN)
    (cluster,) = summary.clusters
    assert (cluster.name, cluster.containers, cluster.untraced) == ("prod", 6, 3)
    assert [(r.registry, r.pushes) for r in summary.registries] == [("registry.example.com", 3)]
    assert [s.scanner for s in summary.scanners] == ["trivy"] and summary.scanners[0].images == 3


def test_newer_scan_supersedes_older_and_history_is_kept(estate):
    older = scenario.trivy_report(
        scenario.ALPINE, scenario.WEB, "2024-04-01T00:00:00Z", drop_vulnerabilities=True
    )
    newer = scenario.trivy_report(
        scenario.ALPINE, scenario.WEB, "2024-07-01T00:00:00Z", drop_vulnerabilities=True
    )
    with transaction(estate) as session:
        result = store.ingest_scan(session, parse_report(older, "old.json"), "old.json")
    assert result.images[0].latest is False
    assert pods(query(estate, min_severity="critical")) == ["web"]
    with transaction(estate) as session:
        assert store.ingest_scan(session, parse_report(newer, "new.json"), "new.json").images[0].latest
    assert pods(query(estate, min_severity="critical")) == []
    with estate() as session:
        history = session.execute(
            select(func.count()).select_from(ScanDigest).where(ScanDigest.digest == scenario.WEB)
        ).scalar_one()
    assert history == 3


def test_sync_replaces_the_cluster_view(estate):
    with transaction(estate) as session:
        result = store.replace_inventory(session, scenario.inventory(include_web=False))
    assert (result.containers, result.replaced) == (5, 6)
    assert "web" not in pods(query(estate, running=True))
    # Still pushed and scanned: it stays in the explorer as an image no cluster runs.
    (row,) = query(estate, running=False).rows
    assert (row.running, row.digest, row.pod) == (False, scenario.WEB, None)
    with estate() as session:
        assert session.execute(select(func.count()).select_from(RunningContainer)).scalar_one() == 5


def test_a_failing_scan_transaction_leaves_nothing(estate):
    report = parse_report(scenario.trivy_report(scenario.ALPINE, scenario.TOOL), "tool.json")
    with pytest.raises(RuntimeError):
        with transaction(estate) as session:
            store.ingest_scan(session, report, "tool.json")
            raise RuntimeError("simulated failure after the rows were written")
    with estate() as session:
        assert (
            session.execute(
                select(func.count()).select_from(ImageScan).where(ImageScan.file_name == "tool.json")
            ).scalar_one()
            == 0
        )


def test_relation_recorded_after_the_scan_carries_the_summary(sessions):
    scenario.load(sessions)
    manifest = "sha256:" + "7" * 64
    with transaction(sessions) as session:
        store.ingest_scan(
            session, parse_report(scenario.trivy_report(scenario.ALPINE, manifest), "m.json"), "m.json"
        )
        new = store.record_relations(
            session, [(scenario.TOOL, manifest, "linux", "arm64")], source="registry"
        )
    assert new == 1
    assert "tool" in pods(query(sessions, min_severity="critical"))


def _rule_of_record(session, principal) -> set:
    """Digests a principal may see by the rule itself: pushed by a readable organisation, or one relation hop
    from such a push (the join ``digest_organizations`` stands in for)."""
    from imagetrail.queries.trail import pushes_joined, trail_conditions
    from imagetrail.store.models.pipeline import Push, with_related

    pushed = pushes_joined(Push.digest).where(*trail_conditions(ExplorerFilters(), principal))
    return set(session.execute(with_related(pushed)).scalars())


def _visible_pods(sessions, principal) -> set:
    return set(pods(query(sessions, principal=principal, running=True)))


def _assert_matches_the_rule(sessions, *organizations):
    for org in organizations:
        with sessions() as session:
            containers = session.execute(select(RunningContainer.pod, RunningContainer.digest)).all()
            allowed = _rule_of_record(session, reader(org))
        expected = {pod for pod, d in containers if d in allowed}
        assert _visible_pods(sessions, reader(org)) == expected, org


@pytest.mark.parametrize("filled", [False, True], ids=["looked-up", "copied"])
def test_reader_visibility_follows_new_pushes_and_relations_at_once(estate, filled):
    from imagetrail.ingest.reports import ingest_report
    from tests.cloud.support import ingester, pipeline_report, push

    if filled:  # the containers' copy of their organisations, as after a sync through the API
        _fill(estate)
    assert "tool" not in _visible_pods(estate, reader("contoso")) | _visible_pods(estate, reader("fabrikam"))
    # A fabrikam run pushes the digest the tool pod runs: fabrikam sees it on the next query, contoso never.
    ingest_report(
        estate,
        pipeline_report("fabrikam", "pay", "203", [push(f"{scenario.REGISTRY}/shop/tool:9", scenario.TOOL)]),
        ingester(),
    )
    assert "tool" in _visible_pods(estate, reader("fabrikam"))
    assert "tool" not in _visible_pods(estate, reader("contoso"))
    # The nginx pod runs a platform manifest of an index contoso pushes; the relation arrives after both.
    index = "sha256:" + "8" * 64
    ingest_report(
        estate, pipeline_report("contoso", "shop", "104", [push(f"{scenario.REGISTRY}/shop/nginx:1", index)]),
        ingester(),
    )
    assert "nginx" not in _visible_pods(estate, reader("contoso"))
    with transaction(estate) as session:
        edge = (index, scenario.NGINX, "linux", "amd64")
        assert store.record_relations(session, [edge], source="registry") == 1
    assert "nginx" in _visible_pods(estate, reader("contoso"))
    assert "nginx" not in _visible_pods(estate, reader("fabrikam"))
    _assert_matches_the_rule(estate, "contoso", "fabrikam", "nobody")
    if filled:  # edited in the transactions of the push and the relation
        _assert_copies_exact(estate)


def test_visibility_rows_equal_the_rule_after_a_push_is_removed_and_on_rebuild(estate):
    from sqlalchemy import delete

    from imagetrail.ingest.digest_organizations import (
        rebuild_digest_organizations,
        refresh_digest_organizations,
    )
    from imagetrail.store.models.pipeline import DigestOrganization, Push

    def rows(session):
        table = DigestOrganization
        return set(session.execute(select(table.digest, table.organization_id)).all())

    with estate() as session:
        incremental = rows(session)
    # index, its platform manifest, web and svc: each with the one organisation that pushed it
    assert len(incremental) == 4
    with transaction(estate) as session:
        assert rebuild_digest_organizations(session) == 4
        assert rows(session) == incremental
        # The index's push goes (as when a claimed report is replaced): it and its manifest are hidden again.
        session.execute(delete(Push).where(Push.digest == scenario.API_INDEX))
        assert refresh_digest_organizations(session, [scenario.API_INDEX]) == 2
    assert "api" not in _visible_pods(estate, reader("contoso"))
    _assert_matches_the_rule(estate, "contoso", "fabrikam")


def test_a_batch_adds_the_visibility_rows_of_its_pushes_and_their_relatives(estate):
    """Ingest adds rows from the batch's own pushes only: they must equal a full recompute, for a relation
    stored before the push (either direction) and for the platforms a report lists itself."""
    from imagetrail.ingest.digest_organizations import rebuild_digest_organizations
    from imagetrail.ingest.reports import store_reports
    from imagetrail.report import Platform
    from imagetrail.store.models.pipeline import DigestOrganization
    from tests.cloud.support import digest, ingester, pipeline_report, push

    def rows():
        with estate() as session:
            return set(session.execute(select(DigestOrganization.digest, DigestOrganization.organization_id)).all())

    index, manifest, other_index, other_manifest = digest(901), digest(902), digest(903), digest(904)
    with transaction(estate) as session:
        assert store.record_relations(session, [(index, manifest, "linux", "amd64")], source="registry") == 1
    outcomes = store_reports(estate, [
        # the platform manifest is pushed: the index it belongs to becomes contoso's too
        (pipeline_report("contoso", "shop", "301", [push(f"{scenario.REGISTRY}/shop/m:1", manifest)]), ingester()),
        # an index with its platforms in the report: the relation is written by the same transaction
        (pipeline_report("fabrikam", "pay", "302", [push(f"{scenario.REGISTRY}/pay/i:1", other_index,
                                                         platforms=[Platform(other_manifest, "linux", "arm64")])]),
         ingester()),
    ])
    assert [o.created for o in outcomes] == [True, True]
    added = rows()
    with estate() as session:
        ids = dict(session.execute(select(Organization.name, Organization.id)).all())
    assert {(index, ids["contoso"]), (manifest, ids["contoso"]), (other_index, ids["fabrikam"]),
            (other_manifest, ids["fabrikam"])} <= added
    with transaction(estate) as session:
        rebuild_digest_organizations(session)
    assert rows() == added


def _assert_copies_exact(sessions):
    """Every filled ``organization_ids`` names exactly its digest's digest_organizations rows."""
    from imagetrail.store.models.pipeline import DigestOrganization

    with sessions() as session:
        pairs = session.execute(select(DigestOrganization.digest, DigestOrganization.organization_id)).all()
        containers = session.execute(select(RunningContainer.pod, RunningContainer.digest,
                                            RunningContainer.organization_ids)).all()
    for pod, digest, copied in containers:
        assert copied is not None, pod  # the fast path is the one under test
        assert sorted(int(i) for i in copied.strip(",").split(",") if i) == sorted(
            org for d, org in pairs if d == digest), pod


def _fill(sessions):
    from imagetrail.ingest.digest_organizations import fill_container_organizations

    with transaction(sessions) as session:
        assert fill_container_organizations(session) == session.execute(
            select(func.count()).select_from(RunningContainer)).scalar_one()
    _assert_copies_exact(sessions)


def test_filled_organisation_copies_follow_removed_pushes_and_syncs(estate):
    """The containers' copy of their organisations (the organisation-scoped reader's filter) loses an
    organisation in the transaction that removes its push, and a sync's new rows, read through
    digest_organizations until filled, are filled after it: the rule throughout."""
    from sqlalchemy import delete

    from imagetrail.ingest.digest_organizations import refresh_digest_organizations
    from imagetrail.store.models.pipeline import Push

    _fill(estate)
    assert "api" in _visible_pods(estate, reader("contoso"))
    with transaction(estate) as session:
        session.execute(delete(Push).where(Push.digest == scenario.API_INDEX))
        refresh_digest_organizations(session, [scenario.API_INDEX])
    _assert_copies_exact(estate)
    assert "api" not in _visible_pods(estate, reader("contoso"))
    _assert_matches_the_rule(estate, "contoso", "fabrikam")
    with transaction(estate) as session:
        store.replace_inventory(session, scenario.inventory())
    _assert_matches_the_rule(estate, "contoso", "fabrikam", "nobody")
    with transaction(estate) as session:
        assert store.fill_after_sync(session, "prod") > 0
    _assert_copies_exact(estate)
    _assert_matches_the_rule(estate, "contoso", "fabrikam", "nobody")


def test_an_empty_answer_says_when_the_readers_permissions_hid_rows(estate):
    # fabrikam's pay/svc is the only row its organisation filter matches: contoso's reader sees none of it
    assert query(estate, org="fabrikam").total > 0
    hidden = query(estate, principal=reader("contoso"), org="fabrikam")
    assert hidden.total == 0 and hidden.rows == [] and hidden.hidden_by_permissions is True
    for running in (True, False):  # either list, on its own
        page = query(estate, principal=reader("contoso"), org="fabrikam", running=running)
        assert page.hidden_by_permissions is (query(estate, org="fabrikam", running=running).total > 0)
    # nothing hidden: a filter nothing matches, a reader who sees rows, a reader of every organisation
    assert query(estate, principal=reader("contoso"), cve="CVE-1999-0001").hidden_by_permissions is False
    assert query(estate, principal=reader("fabrikam"), org="fabrikam").hidden_by_permissions is False
    assert query(estate, org="contoso", cve="CVE-1999-0001").hidden_by_permissions is False


def test_a_readers_page_reads_its_organisation_ids_once(estate):
    """The running containers' condition and the images-not-running condition share the reader's organisation
    ids, read once per session; the answer is the one two lookups gave."""
    import sqlalchemy as sa

    lookups = []
    with estate() as session:
        engine = session.get_bind()

        def count(conn, cursor, statement, *args) -> None:
            if statement.lstrip().startswith("SELECT organizations.id"):
                lookups.append(statement)

        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            page = run_query(session, ExplorerFilters(), reader("contoso"), page_size=100)
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
    assert len(lookups) == 1
    assert page.total == len(page.rows) == 2
    assert {r.trail.organization for r in page.rows} == {"contoso"}
