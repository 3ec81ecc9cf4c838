"""Group commit: many reports in one transaction, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import asyncio
import threading

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from imagetrail.auth import Principal
from imagetrail.ingest.reports import IngestResult, store_reports
from imagetrail.ingest.writer import IngestWriter
from tests.server.reports import ado_report, body, digest, push
from tests.server.test_ingest import _drop_failing_trigger, _install_failing_trigger, counts

ADMIN = Principal(kind="api-key", subject="key:test", scopes=frozenset({"admin"}), organizations=None)


def _report(run: str, job: str = "Build", reference: str = "127.0.0.1:5000/web/app:1"):
    return ado_report(run_id=run, job=job, pushes=[push(reference, digest(f"{run}/{job}/{reference}")),
                                                   push("127.0.0.1:5000/web/base:1", digest("base"))])


def test_a_report_failing_in_a_batch_does_not_sink_the_others(client):
    sessions = client.app.state.sessions
    good = [_report("1"), _report("2", job="Test"), _report("3")]
    bad = _report("4", reference="127.0.0.1:5000/web/app:poison")
    _install_failing_trigger(client, "127.0.0.1:5000/web/app:poison")
    outcomes = store_reports(sessions, [(body(good[0]), ADMIN), (body(bad), ADMIN), (body(good[1]), ADMIN),
                                        (body(good[2]), ADMIN)])
    assert [type(o) for o in outcomes] == [IngestResult, type(outcomes[1]), IngestResult, IngestResult]
    assert isinstance(outcomes[1], DBAPIError) and "injected failure" in str(outcomes[1])
    assert all(o.created for o in outcomes if isinstance(o, IngestResult))
    with client.app.state.engine.connect() as conn:
        stored = set(conn.execute(sa.text("SELECT id FROM reports")).scalars())
        poisoned = conn.execute(sa.text("SELECT COUNT(*) FROM pushes WHERE reference LIKE '%poison'")).scalar_one()
    assert stored == {r.report_id for r in good} and poisoned == 0
    assert counts(client)["pushes"] == 6 and counts(client)["runs"] == 3
    _drop_failing_trigger(client)
    again = store_reports(sessions, [(body(bad), ADMIN), (body(good[0]), ADMIN)])
    assert [(o.created, o.pushes) for o in again] == [(True, 2), (False, 2)]


def test_the_same_report_twice_in_one_batch_is_stored_once(client):
    report = _report("7")
    outcomes = store_reports(client.app.state.sessions, [(body(report), ADMIN), (body(report), ADMIN)])
    assert [o.created for o in outcomes] == [True, False]
    assert counts(client)["reports"] == 1 and counts(client)["pushes"] == 2


def test_shared_rows_are_found_again_after_the_cache_learned_them(client):
    sessions = client.app.state.sessions
    first = [_report(str(run), job=f"job{job}") for run in range(3) for job in range(4)]
    assert all(o.created for o in store_reports(sessions, [(body(r), ADMIN) for r in first]))
    # A run first seen without a commit gets it from a later report, through the cached run id.
    late = ado_report(run_id="9", job="A", commit=None)
    assert store_reports(sessions, [(body(late), ADMIN)])[0].created
    assert store_reports(sessions, [(body(ado_report(run_id="9", job="B")), ADMIN)])[0].created
    c = counts(client)
    assert (c["organizations"], c["projects"], c["pipelines"], c["people"], c["runs"], c["jobs"]) == (1, 1, 1, 1, 4, 14)
    assert (c["image_references"], c["images"]) == (3, 15)
    with client.app.state.engine.connect() as conn:
        assert conn.execute(sa.text("""SELECT "commit" FROM runs WHERE external_id = '9'""")).scalar_one() == "a" * 40


def test_the_writer_answers_each_request_after_its_batch_committed(client):
    writer = IngestWriter(client.app.state.sessions, max_batch=100)
    reports = [_report(str(run), job=f"job{job}") for run in range(10) for job in range(5)]

    async def send_all():
        return await asyncio.gather(*(writer.submit(body(r), ADMIN) for r in reports),
                                    writer.submit(body(reports[0]), ADMIN))

    results = asyncio.run(send_all())
    assert sum(r.created for r in results) == 50 and not results[-1].created
    assert writer.largest_batch > 1 and writer.batches < len(results)  # grouped, not one commit per report
    with client.app.state.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM reports")).scalar_one() == 50


def test_two_writers_naming_each_others_runs_do_not_deadlock(postgres_url, caplog):
    """Writer A states something new about run 100 (so it locks that run) and stores a new job of run 200;
    writer B the other way round, at the same moment. Each job's foreign-key check locks its run FOR KEY
    SHARE: against a FOR UPDATE run lock the two deadlocked (PostgreSQL then waited deadlock_timeout, 1 s,
    and aborted one). Both writers hold their lock before either stores its jobs (a barrier in between)."""
    import threading

    from imagetrail.store.db import make_engine, make_sessionmaker
    from imagetrail.store.migrate import upgrade

    engine = make_engine(postgres_url)
    try:
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        first = [ado_report(run_id="100", job="A"), ado_report(run_id="200", job="A")]
        assert all(o.created for o in store_reports(sessions, [(body(r), ADMIN) for r in first]))
        batches = [[ado_report(run_id="100", job="B", commit="c" * 40), ado_report(run_id="200", job="C")],
                   [ado_report(run_id="200", job="B", commit="c" * 40), ado_report(run_id="100", job="C")]]
        both_locked = threading.Barrier(2, timeout=20)
        waited = set()

        @sa.event.listens_for(engine, "after_cursor_execute")
        def hold(conn, cursor, statement, *args) -> None:
            if " FOR " in statement and "UPDATE" in statement and threading.get_ident() not in waited:
                waited.add(threading.get_ident())  # once per writer: a retried transaction goes on alone
                both_locked.wait()

        outcomes = {}
        caplog.set_level("INFO", logger="imagetrail.ingest.reports")

        def write(n: int) -> None:
            outcomes[n] = store_reports(sessions, [(body(r), ADMIN) for r in batches[n]])

        writers = [threading.Thread(target=write, args=(n,)) for n in (0, 1)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(60)
        assert len(waited) == 2  # both writers took a run lock
        retried = [r.getMessage() for r in caplog.records if "retried" in r.getMessage()]
        assert retried == []  # no deadlock (SQLSTATE 40P01), so no retry
        assert [[o.created for o in outcomes[n]] for n in (0, 1)] == [[True, True], [True, True]]
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM jobs")).scalar_one() == 6
    finally:
        engine.dispose()


def test_a_batch_meeting_connections_the_database_dropped_is_written_on_new_ones(postgres_url, caplog):
    """After a database restart or pg_terminate_backend, every pooled connection is dead, and one back from its
    last batch moments ago is not pinged. The batch that meets one is written again on a new connection (the
    pool replaces all its older ones), instead of answering 503 once per dead connection."""
    import threading

    from imagetrail.store.db import make_engine, make_sessionmaker
    from imagetrail.store.migrate import upgrade

    name = "imagetrail-dropped-test"
    engine = make_engine(postgres_url + f"&application_name={name}")
    admin = sa.create_engine(postgres_url.split("?")[0], isolation_level="AUTOCOMMIT")
    try:
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        # several connections in the pool, all checked in moments ago
        barrier = threading.Barrier(3, timeout=20)

        def hold_a_connection(n: int) -> None:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
                barrier.wait()

        holders = [threading.Thread(target=hold_a_connection, args=(n,)) for n in range(3)]
        for holder in holders:
            holder.start()
        for holder in holders:
            holder.join(30)
        assert engine.pool.checkedin() >= 3
        with admin.connect() as conn:
            dropped = conn.execute(sa.text(
                "WITH server AS MATERIALIZED (SELECT pid FROM pg_stat_activity WHERE application_name = :name) "
                "SELECT pid FROM server WHERE pg_terminate_backend(pid)"), {"name": name}).scalars().all()
        assert len(dropped) >= 3
        caplog.set_level("INFO", logger="imagetrail.ingest.reports")
        for n in range(3):  # one batch per dead connection, had each been found one at a time
            outcomes = store_reports(sessions, [(body(ado_report(run_id=f"30{n}", job="A")), ADMIN)])
            assert [type(o).__name__ for o in outcomes] == ["IngestResult"], outcomes
            assert outcomes[0].created
        assert [r.getMessage() for r in caplog.records if "lost connection" in r.getMessage()] == [
            "a batch of 1 reports is retried after a lost connection (attempt 1)"]
    finally:
        engine.dispose()
        admin.dispose()


def test_the_writer_waits_for_more_reports_only_under_load(client):
    """A lone report is written at once; after a batch that held several reports (a server under load), the
    next batch first waits ``batch_wait`` for more; a lone report again ends the waiting."""
    held, seen = threading.Event(), []

    def store(sessions, items):
        seen.append(len(items))
        if len(seen) == 1:
            held.wait(30)  # the first batch is held, so the next reports queue up behind it
        return store_reports(sessions, items)

    writer = IngestWriter(client.app.state.sessions, batch_wait=0.001, store=store)

    async def scenario():
        first = asyncio.ensure_future(writer.submit(body(_report("1")), ADMIN))
        while not seen:
            await asyncio.sleep(0.01)
        behind = [asyncio.ensure_future(writer.submit(body(_report(str(run))), ADMIN)) for run in range(2, 6)]
        await asyncio.sleep(0)  # each has queued its report
        held.set()
        await asyncio.gather(first, *behind)
        waits = [writer.lingered]  # neither batch waited: the first one was a lone report
        await writer.submit(body(_report("6")), ADMIN)  # after a batch of 4: waits, then is alone
        waits.append(writer.lingered)
        await writer.submit(body(_report("7")), ADMIN)  # after a lone report: no wait
        waits.append(writer.lingered)
        return waits

    assert asyncio.run(scenario()) == [0, 1, 1]
    assert seen == [1, 4, 1, 1]
    assert counts(client)["reports"] == 7
