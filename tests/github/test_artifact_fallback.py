"""GitHub: a report the action could not deliver is kept as a workflow artifact through the runner's
artifact service, and the backend's reconcile reads it back with a GitHub token and stores it."""

from __future__ import annotations

import io
import json
import socket
import time
import zipfile
from pathlib import Path

import pytest
import requests

from imagetrail.collector.context.github import github_context
from imagetrail.collector.state import JobFiles, JobRecord, append_line, write_json_atomically
from tests.collector.support import QuietEngine
from tests.github.artifact_service import ArtifactService
from tests.github.runner import ActionRun, job_env
from tests.server.reports import body, digest, github_report, push
from tests.server.test_serve_e2e import create_key
from tests.support.live_server import running_server

pytestmark = pytest.mark.e2e

REPOSITORY = "octo-org/app"
DIGEST = "sha256:" + "ef" * 32
REST_TOKEN = "ghs_" + "r" * 36
API_KEY = "it-key-" + "k" * 30


def _job_with_a_push(tmp_path: Path, engine: QuietEngine, service: ArtifactService) -> dict:
    env = job_env(tmp_path, REPOSITORY, DOCKER_HOST=engine.host, ACTIONS_RUNTIME_TOKEN=service.token,
                  ACTIONS_RESULTS_URL=service.url + "/")
    files = JobFiles.for_job(env, github_context(env))
    files.ensure_directory()
    start = time.time_ns() - 1_000_000_000
    write_json_atomically(files.job, JobRecord(start_ns=start).to_json())
    append_line(files.pushes, {"type": "watching", "since": start, "pid": 1})
    append_line(files.pushes, {"type": "push", "event": {"reference": "ghcr.io/octo-org/app:7", "timeNano": start + 1},
                               "resolution": {"digest": DIGEST, "imageId": "sha256:" + "01" * 32}})
    return env


def test_kept_as_an_artifact_then_reconciled(tmp_path, sqlite_url):
    env_run = {"id": 9876543210, "repository_id": 712345678, "head_branch": "main",
               "head_sha": "4f0d1e2c3b4a59687766554433221100ffeeddcc"}
    with QuietEngine(tmp_path / "engine.sock") as engine, \
            ArtifactService(env_run, REPOSITORY, REST_TOKEN) as service, socket.socket() as down:
        down.bind(("127.0.0.1", 0))  # bound, not listening: the backend is down
        env = _job_with_a_push(tmp_path, engine, service)
        run = ActionRun(env, {"backend-url": f"http://127.0.0.1:{down.getsockname()[1]}", "api-key": API_KEY},
                        tmp_path)
        post = run.step("post")
        assert post.returncode == 0, post.log
        [warning] = post.warnings
        assert "could not be sent" in warning and "as workflow artifact imagetrail-report-" in warning, warning
        logged = "\n".join(line for line in post.log.splitlines() if not line.startswith("::add-mask::"))
        assert API_KEY not in logged and service.token not in post.log
        assert service.errors == []
        assert [r.split(" ")[0] for r in service.requests] == ["POST", "PUT", "POST"]
        [artifact] = service.artifacts.values()
        assert artifact.finalized
        with zipfile.ZipFile(io.BytesIO(artifact.blob)) as archive:
            [member] = archive.namelist()
            kept = json.loads(archive.read(member))
        assert member.startswith("report-") and [p["digest"] for p in kept["pushes"]] == [DIGEST]
        assert artifact.name == "imagetrail-report-" + kept["reportId"][7:39]

        # The backend knows the repository from an earlier report; its reconcile finds the artifact.
        settings = {"IMAGETRAIL_GITHUB_TOKEN": REST_TOKEN, "IMAGETRAIL_GITHUB_API_URL": service.url,
                    "IMAGETRAIL_RECONCILE_INTERVAL_SECONDS": "2"}
        with running_server(sqlite_url, settings) as url:
            ingest = create_key(sqlite_url, "octo-org", "ingest")
            earlier = github_report(owner="octo-org", repo=REPOSITORY, repo_id="712345678", run_id="1",
                                    pushes=[push("ghcr.io/octo-org/app:6", digest("earlier"))])
            assert requests.post(url + "/v1/reports", json=body(earlier),
                                 headers={"Authorization": f"Bearer {ingest}"}).status_code == 201
            reader = {"Authorization": f"Bearer {create_key(sqlite_url, '*', 'read')}"}
            limit = time.monotonic() + 30
            while True:
                status = requests.get(url + "/v1/coverage", headers=reader, timeout=10).json()["reconcile"]
                if status["reconciled"] or time.monotonic() > limit:
                    break
                time.sleep(0.3)
            trail = requests.get(url + "/v1/trail", params={"reference": "ghcr.io/octo-org/app:7"}, headers=reader,
                                 timeout=10).json()
        assert status["reconciled"] == 1 and status["pending"] == 0, status
        assert [s["system"] for s in status["sources"]] == ["github"]
        assert {p["evidence"]["report_id"] for p in trail["pushes"]} == {kept["reportId"]}
        assert service.errors == []
        assert any(r.startswith(f"GET /repos/{REPOSITORY}/actions/artifacts") for r in service.requests)


def test_no_artifact_service_still_keeps_the_report(tmp_path):
    with QuietEngine(tmp_path / "engine.sock") as engine, \
            ArtifactService({"id": 1}, REPOSITORY, REST_TOKEN) as service, socket.socket() as down:
        down.bind(("127.0.0.1", 0))
        env = _job_with_a_push(tmp_path, engine, service)
        env["ACTIONS_RUNTIME_TOKEN"] = "not-a-jwt"
        post = ActionRun(env, {"backend-url": f"http://127.0.0.1:{down.getsockname()[1]}", "api-key": API_KEY},
                         tmp_path).step("post")
    [warning] = post.warnings
    assert "uploading the workflow artifact failed: ACTIONS_RUNTIME_TOKEN is not a JWT" in warning
    assert "in the job summary" in warning and post.returncode == 0
    assert service.requests == []


def test_artifacts_of_fork_runs_are_not_reconciled(tmp_path):
    """A pull request from a fork runs in the base repository and may upload artifacts there, but it
    gets no id token of that repository; its artifacts must not become the repository's reports."""
    from datetime import datetime, timedelta, timezone

    from imagetrail.services.reconcile.github import GitHubArtifacts
    from tests.github.artifact_service import Artifact

    fork_run = {"id": 55, "repository_id": 712345678, "head_repository_id": 99999, "head_branch": "patch"}
    report = github_report(owner="octo-org", repo=REPOSITORY, repo_id="712345678", run_id="55")
    with ArtifactService(fork_run, REPOSITORY, REST_TOKEN) as service:
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as handle:
            handle.writestr("report-x.json", json.dumps(body(report)))
        service.artifacts["imagetrail-report-x"] = Artifact(1001, "imagetrail-report-x", "r", "j",
                                                            blob=archive.getvalue(), finalized=True)
        client = GitHubArtifacts(service.url, REST_TOKEN)
        [kept] = client.kept_reports(REPOSITORY, datetime.now(timezone.utc) - timedelta(hours=1), 1 << 20)
        client.close()
    assert kept.content is None and not kept.retry and "fork" in kept.problem
    assert not any("/zip" in r for r in service.requests)  # not even downloaded
