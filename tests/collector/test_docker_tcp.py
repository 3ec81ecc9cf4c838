"""The daemon as a ``tcp://`` endpoint: the real engine behind a TCP to Unix socket forwarder on
127.0.0.1, so docker-py's TCP transport carries the watcher's stream, the ring buffer query and
the digest resolution (the lean standard-library client only speaks to Unix sockets)."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from imagetrail.collector.docker_endpoint import resolve_endpoint
from tests.collector.support import (
    TcpToUnix,
    azure_env,
    collect,
    docker,
    import_image,
    job_record,
    push,
    validate,
    wait_for,
    watcher_pushes,
)
from tests.support import services

pytestmark = pytest.mark.e2e

LABELS = {"org.opencontainers.image.source": "https://example.com/shop.git",
          "org.opencontainers.image.revision": "3f2c1e0d9b8a7f6e5d4c3b2a1908f7e6d5c4b3a2"}


@pytest.fixture
def tcp_engine(docker_engine):
    socket_path = resolve_endpoint(os.environ).unix_socket
    if not socket_path or not Path(socket_path).exists():
        services.unavailable("the Docker engine's Unix socket",
                             f"the test engine is {resolve_endpoint(os.environ).host}")
    with TcpToUnix(socket_path) as forwarder:
        yield forwarder


def _post_job(env: dict, report_file: Path) -> dict:
    run = collect("post-job", env, "--dry-run", "--report-file", str(report_file))
    assert run.returncode == 0 and run.warnings() == [], run.output
    body = json.loads(report_file.read_text())
    validate(body)
    return body


def _calls(forwarder: TcpToUnix, path: str) -> list:
    # docker-py calls versioned paths: GET /v1.41/events?...
    return [line for line in forwarder.request_lines if line.split(" ")[1].split("?")[0].endswith(path)]


def test_watcher_and_post_job_over_tcp(registry, tcp_engine, tmp_path):
    base = f"{registry}/it-{uuid.uuid4().hex[:10]}"
    env = azure_env(tmp_path, DOCKER_HOST=tcp_engine.host)
    pre = collect("pre-job", env)
    assert pre.returncode == 0 and pre.warnings() == [], pre.output
    assert job_record(env)["dockerHost"] == tcp_engine.host
    wait_for(lambda: _calls(tcp_engine, "/events"), 30, "the watcher's event stream through the forwarder")

    app_id = import_image(f"{base}/app:1", LABELS)
    worker_id = import_image(f"{base}/worker:1")
    app_digest, worker_digest = push(f"{base}/app:1"), push(f"{base}/worker:1")
    wait_for(lambda: len(watcher_pushes(env)) >= 2, 30, "the watcher to record both pushes")

    body = _post_job(env, tmp_path / "report.json")
    got = {p["reference"]: (p["digest"], p["imageId"], p["labels"]) for p in body["pushes"]
           if p["reference"].startswith(base)}
    assert got == {f"{base}/app:1": (app_digest, app_id, LABELS),
                   f"{base}/worker:1": (worker_digest, worker_id, {})}
    assert body["collector"]["discovery"][:2] == ["watcher: daemon events streamed from the job start",
                                                  "daemon event buffer since the job start"]
    # The watcher inspected each pushed image through the forwarder.
    assert len(_calls(tcp_engine, "/json")) >= 2, tcp_engine.request_lines


def test_ring_buffer_and_resolution_over_tcp(registry, tcp_engine, tmp_path):
    base = f"{registry}/it-{uuid.uuid4().hex[:10]}"
    start = datetime.now(timezone.utc).replace(microsecond=0)
    time.sleep(1.05)  # the pipeline start time has whole seconds
    app_id = import_image(f"{base}/app:2", LABELS)
    app_digest = push(f"{base}/app:2")
    gone_id = import_image(f"{base}/gone:2")
    gone_digest = push(f"{base}/gone:2")
    docker("rmi", f"{base}/gone:2")  # resolved through the registry, via the daemon

    env = azure_env(tmp_path, DOCKER_HOST=tcp_engine.host,
                    SYSTEM_PIPELINESTARTTIME=start.strftime("%Y-%m-%d %H:%M:%S+00:00"))
    body = _post_job(env, tmp_path / "report.json")
    got = {p["reference"]: (p["digest"], p["imageId"], p["labels"]) for p in body["pushes"]
           if p["reference"].startswith(base)}
    assert got == {f"{base}/app:2": (app_digest, app_id, LABELS),
                   f"{base}/gone:2": (gone_digest, gone_id, {})}
    assert "daemon event buffer since the pipeline start (no pre-job record)" in \
        body["collector"]["discovery"]
    assert _calls(tcp_engine, "/events") and _calls(tcp_engine, f"/distribution/{base}/gone:2/json")
