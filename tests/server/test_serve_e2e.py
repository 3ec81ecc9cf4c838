"""End to end: `imagetrail serve` processes, the CLI, several processes on one PostgreSQL, faults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest
import requests
import sqlalchemy as sa

from tests.server.reports import ado_report, body, digest, push
from tests.support.live_server import running_server

pytestmark = pytest.mark.e2e


def cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imagetrail", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def create_key(database_url: str, org: str, scope: str) -> str:
    result = cli("keys", "create", "--org", org, "--scope", scope, env={"IMAGETRAIL_DATABASE_URL": database_url})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_serve_ingest_and_trace_with_the_cli(database_url):
    with running_server(database_url) as url:
        assert requests.get(url + "/healthz").json() == {"status": "ok"}
        assert requests.get(url + "/readyz").json()["status"] == "ready"
        key = create_key(database_url, "*", "admin")
        report = ado_report(pushes=[push("127.0.0.1:5000/web/app:2.0", digest("e2e"))])
        posted = requests.post(url + "/v1/reports", json=body(report), headers={"Authorization": f"Bearer {key}"})
        assert posted.status_code == 201
        env = {"IMAGETRAIL_URL": url, "IMAGETRAIL_API_KEY": key}
        human = cli("trace", digest("e2e"), env=env)
        assert human.returncode == 0, human.stderr
        assert "contoso / Web / web-ci" in human.stdout
        assert "https://dev.azure.com/contoso/Web/_build/results?buildId=345" in human.stdout
        assert "Ann Owner <ann@contoso.example>" in human.stdout
        as_json = json.loads(cli("trace", "127.0.0.1:5000/web/app:2.0", "--json", env=env).stdout)
        assert as_json["pushes"][0]["evidence"]["report_id"] == report.report_id
        listed = cli("images", "--run", "345", env=env)
        assert digest("e2e")[:19] in listed.stdout  # the short digest, which trace accepts back
        again = ado_report(run_id="346", pushes=[push("127.0.0.1:5000/web/app:2.0", digest("e2e"))])
        assert requests.post(url + "/v1/reports", json=body(again),
                             headers={"Authorization": f"Bearer {key}"}).status_code == 201
        first_page = cli("trace", digest("e2e"), "--limit", "1", env=env)
        assert first_page.stdout.count("  run  ") == 1 and "older pushes exist" in first_page.stdout
        every = json.loads(cli("trace", digest("e2e"), "--limit", "1", "--all", "--json", env=env).stdout)
        assert sorted(p["run"]["id"] for p in every["pushes"]) == ["345", "346"] and every["has_more"] is False
        bad_limit = cli("trace", digest("e2e"), "--limit", "501", env=env)
        assert bad_limit.returncode == 2 and "--limit" in bad_limit.stderr
        unknown = cli("trace", digest("nothing"), env=env)
        assert unknown.returncode == 3 and "no push" in unknown.stdout
        refused = cli("trace", digest("e2e"), env={**env, "IMAGETRAIL_API_KEY": "itk_0000_bad"})
        assert refused.returncode == 1 and "IMAGETRAIL_API_KEY" in refused.stderr


def test_db_commands(sqlite_url):
    env = {"IMAGETRAIL_DATABASE_URL": sqlite_url}
    upgraded = cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0 and "(head)" in upgraded.stdout
    assert "(head)" in cli("db", "current", env=env).stdout
    created = cli("keys", "create", "--org", "Contoso", "--scope", "read", "--description", "dashboards", env=env)
    key = created.stdout.strip()
    key_id = key.split("_")[1]
    listing = cli("keys", "list", env=env).stdout
    assert key_id in listing and "contoso" in listing and "dashboards" in listing and key not in listing
    assert cli("keys", "revoke", key_id, env=env).returncode == 0
    assert "revoked" in cli("keys", "list", env=env).stdout
    assert cli("keys", "revoke", key_id, env=env).returncode == 1
    bad_scope = cli("keys", "create", "--org", "x", "--scope", "write", env=env)
    assert bad_scope.returncode == 2 and "--scope" in bad_scope.stderr


@pytest.mark.postgres
def test_two_processes_start_and_ingest_concurrently_on_postgresql(postgres_url):
    with ExitStack() as stack:
        # Both start (and migrate) at the same time: the advisory lock serialises the upgrade.
        starters = ThreadPoolExecutor(2)
        urls = list(starters.map(lambda _: stack.enter_context(running_server(postgres_url)), range(2)))
        key = create_key(postgres_url, "*", "admin")
        headers = {"Authorization": f"Bearer {key}"}
        # 200 reports from 20 runs; every report is sent twice, once to each process, at the same time;
        # all share the organisation, project, pipeline, repository, requester and image references.
        reports = [ado_report(run_id=str(run), job=f"job{job}",
                              pushes=[push("127.0.0.1:5000/web/app:latest", digest(f"{run}-{job}")),
                                      push("127.0.0.1:5000/web/base:1", digest("shared-base"))])
                   for run in range(20) for job in range(10)]

        def send(args):
            url, report = args
            with requests.Session() as session:
                return session.post(url + "/v1/reports", json=body(report), headers=headers, timeout=60).json()

        jobs = [(urls[i % 2], r) for r in reports for i in range(2)]
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(send, jobs))
    statuses = [a["status"] for a in answers]
    assert statuses.count("created") == 200 and statuses.count("duplicate") == 200
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        count = lambda table: conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()  # noqa: E731
        assert (count("reports"), count("pushes"), count("runs"), count("jobs")) == (200, 400, 20, 200)
        assert (count("organizations"), count("projects"), count("people"), count("image_references")) == (1, 1, 1, 2)
        assert count("images") == 201
    engine.dispose()


@pytest.mark.postgres
def test_backends_terminated_mid_load_lose_nothing_acknowledged(postgres_url):
    app_name = "imagetrail-fault-test"
    url_with_name = postgres_url + f"&application_name={app_name}"
    reports = [ado_report(run_id=str(1000 + i), pushes=[push("127.0.0.1:5000/web/app:1", digest(f"kill{i}"))])
               for i in range(300)]
    acknowledged, refused, killed = set(), [], []
    stop = threading.Event()
    admin = sa.create_engine(postgres_url.split("?")[0], isolation_level="AUTOCOMMIT")

    def killer():
        while not stop.wait(0.4):
            with admin.connect() as conn:
                # MATERIALIZED: the name filter must run before pg_terminate_backend, never after.
                killed.extend(conn.execute(sa.text(
                    "WITH server AS MATERIALIZED (SELECT pid FROM pg_stat_activity WHERE application_name = :name) "
                    "SELECT pid FROM server WHERE pg_terminate_backend(pid)"), {"name": app_name}).scalars())

    with running_server(url_with_name) as url:
        headers = {"Authorization": f"Bearer {create_key(postgres_url, '*', 'admin')}"}

        def send(report):
            try:
                response = requests.post(url + "/v1/reports", json=body(report), headers=headers, timeout=60)
            except requests.RequestException as exc:
                return report, str(exc)
            return report, response.status_code

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        with ThreadPoolExecutor(8) as pool:
            for report, status in pool.map(send, reports):
                if status in (200, 201):
                    acknowledged.add(report.report_id)
                else:
                    assert status == 503, status  # never a 500: the client is told to retry
                    refused.append(report)
        stop.set()
        thread.join()
        assert killed, "the load ended before any server connection was terminated"
        print(f"terminated {len(killed)} connections; {len(refused)} reports answered 503")
        assert requests.get(url + "/healthz").status_code == 200
        engine = sa.create_engine(postgres_url)
        with engine.connect() as conn:
            stored = set(conn.execute(sa.text("SELECT id FROM reports")).scalars())
        assert acknowledged <= stored
        for report in refused:  # the others can be resent
            again = requests.post(url + "/v1/reports", json=body(report), headers=headers, timeout=60)
            assert again.status_code in (200, 201), again.text
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM reports")).scalar_one() == 300
            assert conn.execute(sa.text("SELECT COUNT(*) FROM pushes")).scalar_one() == 300
        engine.dispose()
    admin.dispose()
