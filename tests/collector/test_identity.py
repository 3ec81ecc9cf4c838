"""The job's identity, against local servers that check each request as the real services document it.

Docker is a quiet local engine here (see test_faults.py): pushes of concurrent jobs on this
machine's shared engine must not change what is sent."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from imagetrail.collector.context.azure_devops import azure_devops_context
from imagetrail.collector.state import JobFiles, JobRecord, append_line, write_json_atomically
from tests.collector.support import (
    ACCESS_TOKEN,
    SRC,
    HttpStub,
    QuietEngine,
    azure_env,
    collect,
    entra_stand_in,
    json_reply,
    self_signed_certificate,
)

OIDC_TOKEN = "eyJhbGciOiJSUzI1NiJ9.job-oidc-token." + "x" * 40
ENTRA_TOKEN = "entra-access-token-" + "y" * 40
DIGEST = "sha256:" + "ef" * 32
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(autouse=True)
def quiet_engine(tmp_path, monkeypatch):
    with QuietEngine(tmp_path / "engine.sock") as engine:
        monkeypatch.setenv("DOCKER_HOST", engine.host)  # azure_env starts from os.environ
        yield engine
    assert engine.errors == []


def _job(env: dict) -> dict:
    files = JobFiles.for_job(env, azure_devops_context(env))
    files.ensure_directory()
    start = time.time_ns() - 10**9
    write_json_atomically(files.job, JobRecord(start_ns=start).to_json())
    append_line(files.pushes, {"type": "watching", "since": start})
    append_line(files.pushes, {"type": "push",
                               "event": {"reference": "127.0.0.1:5000/id/app:1", "timeNano": start + 5},
                               "resolution": {"digest": DIGEST}})
    return env


def _azure_oidc(seen):
    query = parse_qs(urlsplit(seen.path).query)
    ok = (seen.method == "POST" and urlsplit(seen.path).path.endswith("/oidctoken")
          and query.get("api-version") == ["7.1"]
          and seen.headers.get("authorization") == f"Bearer {ACCESS_TOKEN}"
          and seen.headers.get("content-type") == "application/json")
    return json_reply(200, {"oidcToken": OIDC_TOKEN}) if ok else json_reply(400, {"message": "bad request"})


def _backend(expected_token):
    def reply(seen):
        if seen.headers.get("authorization") != f"Bearer {expected_token}":
            return json_reply(401, {"detail": "invalid token"})
        report_id = json.loads(seen.body)["reportId"]
        return json_reply(201, {"status": "created", "reportId": report_id, "pushes": 1})
    return reply


def test_azure_job_token_is_sent_to_the_backend(tmp_path):
    with HttpStub(_azure_oidc) as ado, HttpStub(_backend(OIDC_TOKEN)) as backend:
        oidc_uri = f"{ado.url}/contoso/proj/_apis/distributedtask/hubs/build/plans/p1/jobs/j1/oidctoken"
        env = _job(azure_env(tmp_path, SYSTEM_OIDCREQUESTURI=oidc_uri, IMAGETRAIL_URL=backend.url))
        run = collect("post-job", env)
    assert run.returncode == 0 and run.warnings() == [], run.output
    assert len(ado.requests) == 1 and len(backend.requests) == 1
    assert OIDC_TOKEN not in run.output and ACCESS_TOKEN not in run.output


def test_azure_without_access_token_is_one_clear_warning(tmp_path):
    with HttpStub(_backend(OIDC_TOKEN)) as backend:
        env = _job(azure_env(tmp_path, SYSTEM_OIDCREQUESTURI="http://127.0.0.1:9/x",
                             IMAGETRAIL_URL=backend.url))
        del env["SYSTEM_ACCESSTOKEN"]
        run = collect("post-job", env)
    assert len(run.warnings()) == 1 and "SYSTEM_ACCESSTOKEN is not available" in run.warnings()[0]
    assert backend.requests == []


def test_github_job_token_with_audience(tmp_path):
    request_token = "gh-request-token-" + "z" * 30

    def github(seen):
        query = parse_qs(urlsplit(seen.path).query)
        ok = (seen.method == "GET" and query.get("audience") == ["api://imagetrail-test"]
              and query.get("api-version") == ["2.0"]
              and seen.headers.get("authorization") == f"Bearer {request_token}")
        return json_reply(200, {"value": OIDC_TOKEN}) if ok else json_reply(403, {"message": "no"})

    with HttpStub(github) as gh, HttpStub(_backend(OIDC_TOKEN)) as backend:
        base = azure_env(tmp_path, IMAGETRAIL_URL=backend.url, IMAGETRAIL_AUDIENCE="api://imagetrail-test")
        del base["TF_BUILD"]
        base.update({"GITHUB_ACTIONS": "true", "RUNNER_TEMP": base.pop("AGENT_TEMPDIRECTORY"),
                     "GITHUB_REPOSITORY": "octo/shop", "GITHUB_RUN_ID": "77", "GITHUB_JOB": "build",
                     "ACTIONS_ID_TOKEN_REQUEST_URL": f"{gh.url}/_apis/token?api-version=2.0",
                     "ACTIONS_ID_TOKEN_REQUEST_TOKEN": request_token})
        from imagetrail.collector.context import pipeline_context

        files = JobFiles.for_job(base, pipeline_context(base))
        files.ensure_directory()
        start = time.time_ns() - 10**9
        write_json_atomically(files.job, JobRecord(start_ns=start).to_json())
        append_line(files.pushes, {"type": "push",
                                   "event": {"reference": "127.0.0.1:5000/gh/app:1", "timeNano": start + 5},
                                   "resolution": {"digest": DIGEST}})
        run = collect("post-job", base)
    assert run.returncode == 0 and run.warnings() == [], run.output
    assert len(gh.requests) == 1 and len(backend.requests) == 1
    assert request_token not in run.output and OIDC_TOKEN not in run.output


def _entra(tenant):
    return entra_stand_in(
        tenant,
        lambda form: (form.get("grant_type") == ["client_credentials"] and form.get("client_id") == ["app-id"]
                      and form.get("client_assertion") == [OIDC_TOKEN]
                      and form.get("client_assertion_type") == [ASSERTION_TYPE]
                      and form.get("scope") == ["api://imagetrail/.default"]),
        ENTRA_TOKEN, "AADSTS700016: bad assertion")


def test_entra_workload_identity_federation_with_msal(tmp_path):
    cert = self_signed_certificate(tmp_path)
    with HttpStub(_azure_oidc) as ado, HttpStub(_entra("tenant-1"), tls=cert) as entra, \
            HttpStub(_backend(ENTRA_TOKEN)) as backend:
        env = _job(azure_env(tmp_path, IMAGETRAIL_URL=backend.url, REQUESTS_CA_BUNDLE=cert[0],
                             SYSTEM_OIDCREQUESTURI=f"{ado.url}/o/p/_apis/distributedtask/hubs/build/plans/a/jobs/b/oidctoken",
                             IMAGETRAIL_ENTRA_CLIENT_ID="app-id", IMAGETRAIL_ENTRA_TENANT_ID="tenant-1",
                             IMAGETRAIL_ENTRA_SCOPE="api://imagetrail/.default",
                             IMAGETRAIL_ENTRA_AUTHORITY_HOST=entra.url))
        run = collect("post-job", env)
        assert run.returncode == 0 and run.warnings() == [], run.output
        assert [r.method for r in entra.requests] == ["GET", "POST"]
        assert len(backend.requests) == 1
        assert ENTRA_TOKEN not in run.output and OIDC_TOKEN not in run.output

        # msal's client-assertion path needs neither cryptography nor PyJWT (pure wheels suffice).
        probe = (
            "import os, sys\n"
            "from imagetrail.collector.identity import obtain_token\n"
            "from imagetrail.collector.settings import Settings\n"
            "from imagetrail.collector.deadline import Deadline\n"
            "from imagetrail.collector.console import Console\n"
            "token = obtain_token(Settings.from_env(os.environ), os.environ, Deadline(10),\n"
            "                     Console(os.environ))\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('cryptography', 'jwt'))\n"
            "print(token == %r, loaded)\n"
            % ENTRA_TOKEN
        )
        done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                              timeout=60)
    assert done.stdout.strip() == "True []", done.stdout + done.stderr


def test_entra_rejection_is_one_warning_and_the_report_is_kept(tmp_path):
    cert = self_signed_certificate(tmp_path)
    with HttpStub(lambda seen: json_reply(200, {"oidcToken": "wrong-token-" + "w" * 20})) as ado, \
            HttpStub(_entra("tenant-1"), tls=cert) as entra, HttpStub(_backend(ENTRA_TOKEN)) as backend:
        env = _job(azure_env(tmp_path, IMAGETRAIL_URL=backend.url, REQUESTS_CA_BUNDLE=cert[0],
                             SYSTEM_OIDCREQUESTURI=f"{ado.url}/oidctoken",
                             IMAGETRAIL_ENTRA_CLIENT_ID="app-id", IMAGETRAIL_ENTRA_TENANT_ID="tenant-1",
                             IMAGETRAIL_ENTRA_SCOPE="api://imagetrail/.default",
                             IMAGETRAIL_ENTRA_AUTHORITY_HOST=entra.url))
        run = collect("post-job", env)
    assert len(run.warnings()) == 1 and "AADSTS700016" in run.warnings()[0], run.output
    assert "attached to the run" in run.warnings()[0] and backend.requests == []


def test_missing_msal_is_one_clear_warning(tmp_path):
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "msal.py").write_text("raise ImportError('msal is blocked for this test')\n")
    with HttpStub(_azure_oidc) as ado, HttpStub(_backend(ENTRA_TOKEN)) as backend:
        env = _job(azure_env(tmp_path, IMAGETRAIL_URL=backend.url, PYTHONPATH=f"{blocker}:{SRC}",
                             SYSTEM_OIDCREQUESTURI=f"{ado.url}/oidctoken",
                             IMAGETRAIL_ENTRA_CLIENT_ID="app-id", IMAGETRAIL_ENTRA_TENANT_ID="t",
                             IMAGETRAIL_ENTRA_SCOPE="api://imagetrail/.default"))
        run = collect("post-job", env)
    assert run.returncode == 0 and len(run.warnings()) == 1, run.output
    assert "msal is not installed" in run.warnings()[0]
    assert Path(env["AGENT_TEMPDIRECTORY"], "imagetrail").is_dir()
