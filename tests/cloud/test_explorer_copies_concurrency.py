"""The explorer's maintained copies (containers' organisations, pushed digests that run) under concurrent syncs,
report ingest and relations on PostgreSQL: no deadlock, and the rule once all is committed and filled."""

from __future__ import annotations

import threading

import pytest

from imagetrail.ingest import cloud as store
from imagetrail.ingest.reports import ingest_report
from imagetrail.store.db import transaction
from tests.cloud import scenario
from tests.cloud.support import digest, ingester, pipeline_report, push
from tests.cloud.test_not_running import _assert_listing_is_the_rule
from tests.cloud.test_store_explorer import _assert_copies_exact, _assert_matches_the_rule

ROUNDS = 6


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_syncs_ingest_and_relations_at_once_keep_the_rule(sessions):
    scenario.load(sessions)
    errors = []

    def run(work):
        try:
            for n in range(ROUNDS):
                work(n)
        except Exception as exc:  # reported below, with the thread's work
            errors.append(exc)

    def sync(n):
        with transaction(sessions) as session:
            store.replace_inventory(session, scenario.inventory(include_web=n % 2 == 0))
        with transaction(sessions) as session:
            store.fill_after_sync(session, "prod")

    def report(n):
        running = (scenario.WEB, scenario.SVC, scenario.TOOL)[n % 3]
        body = pipeline_report("fabrikam", "pay", str(300 + n), [
            push(f"{scenario.REGISTRY}/pay/app:{n}", running), push(f"{scenario.REGISTRY}/pay/new:{n}", digest(90 + n))])
        ingest_report(sessions, body, ingester())

    def relate(n):
        with transaction(sessions) as session:
            store.record_relations(session, [(digest(90 + n), scenario.NGINX, "linux", "amd64")], source="registry")

    threads = [threading.Thread(target=run, args=(work,)) for work in (sync, report, relate)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    _assert_matches_the_rule(sessions, "contoso", "fabrikam", "nobody")
    _assert_listing_is_the_rule(sessions)
    with transaction(sessions) as session:
        store.fill_after_sync(session, "prod")
    _assert_copies_exact(sessions)
    _assert_matches_the_rule(sessions, "contoso", "fabrikam", "nobody")
    _assert_listing_is_the_rule(sessions)
