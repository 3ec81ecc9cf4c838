"""Reconcile against a local Azure DevOps stand-in and the real backend: `imagetrail reconcile` by hand,
and the backend's own scheduled reconcile."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests
import sqlalchemy as sa

from tests.collector.support import HttpStub, entra_stand_in, self_signed_certificate
from tests.server.conftest import migrate
from tests.server.reports import ADO_PROJECT_ID, ado_report, body, digest, push
from tests.server.test_serve_e2e import cli, create_key
from tests.support.azure_devops import AzureDevOpsServer
from tests.support.live_server import running_server

pytestmark = pytest.mark.e2e


def test_reports_attached_to_runs_are_ingested_once(sqlite_url, tmp_path):
    kept = [ado_report(run_id=str(200 + i), pushes=[push("127.0.0.1:5000/web/app:1", digest(f"r{i}"))])
            for i in range(3)]
    with AzureDevOpsServer("contoso", project="Web", pat="secret-pat") as ado, running_server(sqlite_url) as url:
        ado.builds = {
            200: [(f"report-{kept[0].report_id[7:19]}.json", json.dumps(body(kept[0])).encode())],
            201: [(f"report-{kept[1].report_id[7:19]}.json", json.dumps(body(kept[1])).encode()),
                  ("report-broken.json", b"{truncated")],
            202: [],
            203: [(f"report-{kept[2].report_id[7:19]}.json", json.dumps(body(kept[2])).encode())],
        }
        key = create_key(sqlite_url, "contoso", "ingest")
        headers = {"Authorization": f"Bearer {key}"}
        assert requests.post(url + "/v1/reports", json=body(kept[2]), headers=headers).status_code == 201
        env = {"IMAGETRAIL_URL": url, "IMAGETRAIL_API_KEY": key, "AZURE_DEVOPS_PAT": "secret-pat",
               "AZURE_DEVOPS_CACHE_DIR": str(tmp_path / "ado-cache")}
        first = cli("reconcile", "--org-url", ado.url, "--project", "Web", "--since", "3", env=env)
        assert "2 new, 1 already stored, 1 failed" in first.stdout, first.stdout + first.stderr
        assert first.returncode == 1 and "report-broken.json" in first.stderr
        ado.builds[201].pop()
        second = cli("reconcile", "--org-url", ado.url, "--project", "Web", env=env)
        assert second.returncode == 0 and "0 new, 3 already stored, 0 failed" in second.stdout
        assert ado.errors == []
        assert any("minTime=" in r and "/Web/_apis/build/builds?" in r for r in ado.requests)
        for report in kept:
            trail = requests.get(url + "/v1/trail", params={"reference": "127.0.0.1:5000/web/app:1"},
                                 headers={"Authorization": f"Bearer {create_key(sqlite_url, '*', 'read')}"})
            assert report.report_id in {p["evidence"]["report_id"] for p in trail.json()["pushes"]}
            break


def test_a_wrong_pat_is_reported_clearly(sqlite_url, tmp_path):
    with AzureDevOpsServer("contoso", project="Web", pat="right") as ado:
        result = cli("reconcile", "--org-url", ado.url, "--project", "Web",
                     env={"AZURE_DEVOPS_PAT": "wrong", "AZURE_DEVOPS_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert "Azure DevOps request failed" in result.stderr and "wrong" not in result.stderr
    missing = cli("reconcile", "--org-url", "https://dev.azure.com/x", "--project", "P",
                  env={"AZURE_DEVOPS_PAT": ""})
    assert missing.returncode == 2 and "AZURE_DEVOPS_PAT" in missing.stderr


# --- the backend reconciles on its own ------------------------------------------------------------

PAT = "reconcile-pat-" + "7" * 20
RECONCILE_INTERVAL = 3  # seconds; "within the reconcile interval" is checked with this much slack:
SLACK = 25  # a server start and a pass on a loaded machine


def _attachment(report) -> tuple:
    return f"report-{report.report_id[7:39]}.json", json.dumps(body(report)).encode()


def _coverage(url: str, reader: str) -> dict:
    answer = requests.get(url + "/v1/coverage", headers={"Authorization": f"Bearer {reader}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["reconcile"]


def _wait_for_reconciled(url: str, reader: str, count: int, within: float) -> dict:
    limit = time.monotonic() + within
    while True:
        status = _coverage(url, reader)
        if status["reconciled"] >= count or time.monotonic() > limit:
            return status
        time.sleep(0.3)


def _stored(database_url: str) -> dict:
    """reportId -> identity kind, straight from the reports table."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, identity_kind FROM reports")).all()
    finally:
        engine.dispose()
    return {row[0]: row[1] for row in rows}


def test_the_backend_reconciles_kept_reports_on_its_own(database_url, tmp_path):
    with AzureDevOpsServer("contoso", project="Web", pat=PAT, project_id=ADO_PROJECT_ID) as ado:
        env = {"IMAGETRAIL_AZURE_DEVOPS_URL": f"http://127.0.0.1:{ado.port}", "IMAGETRAIL_AZURE_DEVOPS_PAT": PAT,
               "IMAGETRAIL_RECONCILE_INTERVAL_SECONDS": str(RECONCILE_INTERVAL),
               "AZURE_DEVOPS_CACHE_DIR": str(tmp_path / "ado-cache")}
        # Before the outage, contoso/Web reports as usual.
        with running_server(database_url, env) as url:
            ingest = create_key(database_url, "contoso", "ingest")
            before = ado_report(run_id="300")
            assert requests.post(url + "/v1/reports", json=body(before),
                                 headers={"Authorization": f"Bearer {ingest}"}).status_code == 201
        # The backend is down: three jobs keep their reports with their runs; one run keeps a report
        # that claims another run (refused), one has nothing kept.
        kept = [ado_report(run_id=str(310 + i), pushes=[push("127.0.0.1:5000/web/app:3", digest(f"k{i}"))])
                for i in range(3)]
        ado.builds = {310 + i: [_attachment(report)] for i, report in enumerate(kept)}
        forged = ado_report(run_id="999", pushes=[push("127.0.0.1:5000/web/app:evil", digest("forged"))])
        ado.builds[320] = [_attachment(forged)]
        ado.builds[321] = []
        # Back up: the startup pass stores them, with nobody running anything.
        with running_server(database_url, env) as url:
            reader = create_key(database_url, "*", "read")
            status = _wait_for_reconciled(url, reader, 3, SLACK)
            assert status["reconciled"] == 3 and status["pending"] == 0, status
            assert status["last_run_at"] is not None
            [source] = status["sources"]
            assert (source["system"], source["organization"]) == ("azure-devops", "contoso")
            assert "build 320" in source["last_error"] and "run.id" in source["last_error"]
            # A report kept while the backend is up (its agent's breaker was still open): the next
            # scheduled pass stores it, within the interval.
            late = ado_report(run_id="330", pushes=[push("127.0.0.1:5000/web/app:4", digest("late"))])
            ado.builds[330] = [_attachment(late)]
            status = _wait_for_reconciled(url, reader, 4, RECONCILE_INTERVAL + SLACK)
            assert status["reconciled"] == 4, status
            time.sleep(RECONCILE_INTERVAL + 1)  # one more pass: nothing is stored twice
            assert _coverage(url, reader)["reconciled"] == 4
            page = requests.get(url + "/coverage", headers={"Authorization": f"Bearer {reader}"}, timeout=10)
    stored = _stored(database_url)
    assert stored == {before.report_id: "api-key", **{r.report_id: "azure-devops-api" for r in kept + [late]}}
    assert ado.errors == []
    assert set(ado.gets) == {310, 311, 312, 320, 330}  # Builds - Get for runs with kept reports only
    assert page.status_code == 200, page.text[:300]
    assert '<strong id="reconcile-reconciled">4</strong>' in page.text
    assert '<strong id="reconcile-pending">0</strong>' in page.text and "build 320" in page.text


@pytest.mark.parametrize("holders", [4])
def test_only_one_process_reconciles_at_a_time(database_url, holders):
    from imagetrail.store import lease
    from imagetrail.store.db import make_engine, make_sessionmaker
    from imagetrail.store.migrate import upgrade

    engines = [make_engine(database_url) for _ in range(holders)]
    upgrade(engines[0])
    sessions = [make_sessionmaker(engine) for engine in engines]
    barrier = threading.Barrier(holders)
    won = []

    def contend(index: int) -> None:
        barrier.wait()
        if lease.acquire(sessions[index], f"worker-{index}", ttl=60, spacing=30):
            won.append(index)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(holders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert len(won) == 1
        # Released: the others still wait for the spacing since the last pass started...
        lease.release(sessions[won[0]], f"worker-{won[0]}")
        assert not lease.acquire(sessions[0], "worker-0", ttl=60, spacing=30)
        # ...but not longer; and a lease that expired (its holder died) is taken over.
        assert lease.acquire(sessions[0], "worker-0", ttl=60, spacing=30, now=time.time() + 31)
        assert not lease.acquire(sessions[1], "worker-1", ttl=60, spacing=0, now=time.time() + 40)
        assert lease.acquire(sessions[1], "worker-1", ttl=60, spacing=0, now=time.time() + 95)
    finally:
        for engine in engines:
            engine.dispose()


def _entra_for_azure_devops(tenant: str, client_id: str, secret: str, token: str):
    """Entra ID for the client credentials grant with a client secret and Azure DevOps' .default scope."""
    from imagetrail.services.reconcile.azure_devops import AZURE_DEVOPS_SCOPE

    return entra_stand_in(
        tenant,
        lambda form: (form.get("grant_type") == ["client_credentials"] and form.get("client_id") == [client_id]
                      and form.get("client_secret") == [secret] and form.get("scope") == [AZURE_DEVOPS_SCOPE]),
        token, "AADSTS7000215: bad secret")


def test_reconcile_with_an_entra_app(sqlite_url, tmp_path):
    secret, token = "entra-secret-" + "s" * 20, "entra-ado-token-" + "t" * 20
    cert = self_signed_certificate(tmp_path)
    with AzureDevOpsServer("contoso", project="Web", pat="not-used-" + "p" * 20, project_id=ADO_PROJECT_ID,
                         bearer=token) as ado, \
            HttpStub(_entra_for_azure_devops("tenant-9", "reconcile-app", secret, token), tls=cert) as entra:
        env = {"IMAGETRAIL_AZURE_DEVOPS_URL": f"http://127.0.0.1:{ado.port}",
               "IMAGETRAIL_AZURE_DEVOPS_TENANT_ID": "tenant-9", "IMAGETRAIL_AZURE_DEVOPS_CLIENT_ID": "reconcile-app",
               "IMAGETRAIL_AZURE_DEVOPS_CLIENT_SECRET": secret, "IMAGETRAIL_ENTRA_AUTHORITY_BASE": entra.url,
               "IMAGETRAIL_RECONCILE_AZURE_DEVOPS_ORGS": "contoso,fabrikam", "REQUESTS_CA_BUNDLE": cert[0],
               "IMAGETRAIL_RECONCILE_INTERVAL_SECONDS": "0", "IMAGETRAIL_RECONCILE_GAP_SECONDS": "1",
               "AZURE_DEVOPS_CACHE_DIR": str(tmp_path / "ado-cache")}
        with running_server(sqlite_url, env) as url:
            ingest = {"Authorization": f"Bearer {create_key(sqlite_url, '*', 'ingest')}"}
            reader = create_key(sqlite_url, "*", "read")
            assert requests.post(url + "/v1/reports", json=body(ado_report(run_id="400")), headers=ingest,
                                 timeout=10).status_code == 201
            kept = ado_report(run_id="410", pushes=[push("127.0.0.1:5000/web/app:9", digest("entra"))])
            ado.builds = {410: [_attachment(kept)]}
            time.sleep(1.5)  # no schedule (interval 0): the first report after a quiet gap wakes reconcile
            assert requests.post(url + "/v1/reports", json=body(ado_report(run_id="411")), headers=ingest,
                                 timeout=10).status_code == 201
            status = _wait_for_reconciled(url, reader, 1, SLACK)
    sources = {s["organization"]: s for s in status["sources"]}
    # fabrikam is configured but none of its projects reported: said so, not silently skipped.
    assert "no project of 'fabrikam' has reported yet" in sources["fabrikam"]["last_error"]
    assert status["reconciled"] == 1, status
    assert _stored(sqlite_url)[kept.report_id] == "azure-devops-api"
    assert ado.errors == [] and [r.method for r in entra.requests][:2] == ["GET", "POST"]


def test_several_workers_run_one_startup_pass(database_url, tmp_path):
    """`serve --workers 3`: three processes on one database start together; the startup pass runs once."""
    with AzureDevOpsServer("contoso", project="Web", pat=PAT, project_id=ADO_PROJECT_ID) as ado:
        env = {"IMAGETRAIL_AZURE_DEVOPS_URL": f"http://127.0.0.1:{ado.port}", "IMAGETRAIL_AZURE_DEVOPS_PAT": PAT,
               "IMAGETRAIL_RECONCILE_INTERVAL_SECONDS": "0", "AZURE_DEVOPS_CACHE_DIR": str(tmp_path / "ado-cache")}
        with running_server(database_url, env) as url:
            ingest = create_key(database_url, "contoso", "ingest")
            assert requests.post(url + "/v1/reports", json=body(ado_report(run_id="500")),
                                 headers={"Authorization": f"Bearer {ingest}"}).status_code == 201
        kept = ado_report(run_id="510", pushes=[push("127.0.0.1:5000/web/app:5", digest("twice?"))])
        ado.builds = {510: [_attachment(kept)]}
        listed = len([r for r in ado.requests if "/_apis/build/builds?" in r])
        with running_server(database_url, env, args=("--workers", "3")) as url:
            reader = create_key(database_url, "*", "read")
            status = _wait_for_reconciled(url, reader, 1, SLACK)
            time.sleep(3)  # the other workers' startup passes would have listed builds by now too
    assert status["reconciled"] == 1
    assert len([r for r in ado.requests if "/_apis/build/builds?" in r]) - listed == 1
    assert ado.gets == [510]


def test_a_refused_entra_secret_is_shown_without_the_secret(sqlite_url, tmp_path):
    cert = self_signed_certificate(tmp_path)
    with HttpStub(_entra_for_azure_devops("tenant-9", "reconcile-app", "right-" + "s" * 20, "tok-" + "t" * 20),
                  tls=cert) as entra:
        wrong = "wrong-secret-" + "w" * 20
        env = {"IMAGETRAIL_AZURE_DEVOPS_TENANT_ID": "tenant-9", "IMAGETRAIL_AZURE_DEVOPS_CLIENT_ID": "reconcile-app",
               "IMAGETRAIL_AZURE_DEVOPS_CLIENT_SECRET": wrong, "IMAGETRAIL_ENTRA_AUTHORITY_BASE": entra.url,
               "IMAGETRAIL_RECONCILE_AZURE_DEVOPS_ORGS": "contoso", "REQUESTS_CA_BUNDLE": cert[0]}
        migrate(sqlite_url)
        engine = sa.create_engine(sqlite_url)
        with engine.begin() as conn:  # contoso/Web reported before
            conn.execute(sa.text("INSERT INTO organizations (system, name) VALUES ('azure-devops', 'contoso')"))
            conn.execute(sa.text("INSERT INTO projects (organization_id, name) VALUES (1, 'Web')"))
        engine.dispose()
        with running_server(sqlite_url, env) as url:
            reader = create_key(sqlite_url, "*", "read")
            limit = time.monotonic() + SLACK
            while not _coverage(url, reader)["sources"] and time.monotonic() < limit:
                time.sleep(0.3)
            [source] = _coverage(url, reader)["sources"]
    assert "AADSTS7000215" in source["last_error"] and wrong not in source["last_error"]
    assert source["pending"] == 0 and source["reconciled"] == 0
