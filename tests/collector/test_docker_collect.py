"""End to end with the real Docker engine and registry: pre-job, real pushes, post-job."""

from __future__ import annotations

import json
import socket
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from imagetrail.report import compute_report_id
from tests.collector.support import (
    azure_env,
    collect,
    docker,
    import_image,
    kill_watcher,
    push,
    validate,
    wait_for,
    watcher_pushes,
)

pytestmark = pytest.mark.e2e

SOURCE = "https://example.com/shop.git"
REVISION = "3f2c1e0d9b8a7f6e5d4c3b2a1908f7e6d5c4b3a2"
PIPELINE_START_SOURCE = "daemon event buffer since the pipeline start (no pre-job record)"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _churn(count: int) -> None:
    """``count`` pairs of tag/untag events through the API (fast), pushing the job's pushes
    out of the daemon's 256-event ring buffer."""
    import docker as docker_py

    api = docker_py.APIClient(version="auto")
    base = f"churn-{uuid.uuid4().hex[:8]}/x"
    source = docker("images", "-q", "--no-trunc").splitlines()[0]
    try:
        for index in range(count):
            api.tag(source, base, f"t{index}")
            api.remove_image(f"{base}:t{index}")
    finally:
        api.close()


def _watcher_lines(env: dict) -> list:
    files = list((Path(env["AGENT_TEMPDIRECTORY"]) / "imagetrail").glob("job-*.pushes.jsonl"))
    return files[0].read_text().splitlines() if files else []


def _ours(body: dict, prefix: str) -> list:
    return [p for p in body["pushes"] if p["reference"].startswith(prefix)]


def test_pushes_of_the_job_survive_the_ring_buffer_and_retagging(registry, tmp_path):
    base = f"{registry}/it-{uuid.uuid4().hex[:10]}"
    env = azure_env(tmp_path)
    app_id = import_image(f"{base}/app:1.0", {"org.opencontainers.image.source": SOURCE,
                                             "org.opencontainers.image.revision": REVISION,
                                             "com.example.not-oci": "x"})
    docker("tag", f"{base}/app:1.0", f"{base}/app:latest")
    worker_id = import_image(f"{base}/worker:2")
    old_id = import_image(f"{base}/old:1")
    push(f"{base}/old:1")  # before the job: must not be reported
    docker("rmi", f"{base}/old:1")

    pre = collect("pre-job", env)
    assert pre.returncode == 0 and pre.warnings() == [], pre.output
    time.sleep(0.5)

    app_digest = push(f"{base}/app:1.0")
    latest_digest = push(f"{base}/app:latest")
    worker_digest = push(f"{base}/worker:2")
    docker("pull", "-q", f"{base}/old:1")  # a pull is not a push
    failed = f"127.0.0.1:{_closed_port()}/nowhere/app:1"
    docker("tag", f"{base}/app:1.0", failed)
    assert docker("push", failed, check=False) is not None
    docker("rmi", failed)
    # Later in the job: the pushed tag moves to another image, then the image is removed.
    docker("tag", f"{base}/worker:2", f"{base}/app:1.0")
    docker("rmi", f"{base}/app:latest")
    _churn(140)

    report_file = tmp_path / "report.json"
    post = collect("post-job", env, "--dry-run", "--report-file", str(report_file))
    assert post.returncode == 0, post.output
    assert post.warnings() == [], post.output
    assert "dry run" in post.stdout
    body = json.loads(report_file.read_text())
    validate(body)

    labels = {"org.opencontainers.image.source": SOURCE, "org.opencontainers.image.revision": REVISION}
    expected = [
        (f"{base}/app:1.0", "app", "1.0", app_digest, app_id, labels),
        (f"{base}/app:latest", "app", "latest", latest_digest, app_id, labels),
        (f"{base}/worker:2", "worker", "2", worker_digest, worker_id, {}),
    ]
    got = [(p["reference"], p["repository"].rsplit("/", 1)[1], p["tag"], p["digest"], p["imageId"],
            p["labels"]) for p in _ours(body, base)]
    assert got == expected
    assert app_digest == latest_digest  # two tags of one image: one manifest
    assert all(p["registry"] == registry and p["digestError"] is None for p in _ours(body, base))
    assert not [p for p in body["pushes"] if p["reference"].startswith(failed.split("/")[0])]
    assert old_id not in [p["imageId"] for p in body["pushes"]]
    assert body["collector"]["discovery"][0] == "watcher: daemon events streamed from the job start"

    ctx = body["context"]
    assert ctx["organization"] == {"id": env["SYSTEM_COLLECTIONID"], "name": "contoso"}
    assert ctx["repository"]["commit"] == env["BUILD_SOURCEVERSION"]
    assert ctx["requester"]["email"] == "ada@example.com"
    assert body["reportId"] == compute_report_id(body)

    # The same job reporting again (e.g. a retried step) produces the same report id.
    again = collect("post-job", env, "--dry-run", "--report-file", str(tmp_path / "again.json"))
    assert again.returncode == 0, again.output
    assert json.loads((tmp_path / "again.json").read_text())["reportId"] == body["reportId"]


def test_without_pre_job_the_pipeline_start_bounds_the_job(registry, tmp_path):
    base = f"{registry}/it-{uuid.uuid4().hex[:10]}"
    start = datetime.now(timezone.utc).replace(microsecond=0)
    time.sleep(1.05)  # the pipeline start time has whole seconds; stay clear of earlier pushes
    image_id = import_image(f"{base}/api:7")
    digest = push(f"{base}/api:7")
    gone_id = import_image(f"{base}/gone:1")
    gone_digest = push(f"{base}/gone:1")
    docker("rmi", f"{base}/gone:1")  # resolved through the registry (GET /distribution)

    env = azure_env(tmp_path, SYSTEM_PIPELINESTARTTIME=start.strftime("%Y-%m-%d %H:%M:%S+00:00"))
    report_file = tmp_path / "report.json"
    post = collect("post-job", {**env, "IMAGETRAIL_DRY_RUN": "true",
                                "IMAGETRAIL_REPORT_FILE": str(report_file)})
    assert post.returncode == 0 and post.warnings() == [], post.output
    body = json.loads(report_file.read_text())
    validate(body)
    ours = {p["reference"]: p for p in _ours(body, base)}
    assert set(ours) == {f"{base}/api:7", f"{base}/gone:1"}
    assert ours[f"{base}/api:7"]["digest"] == digest and ours[f"{base}/api:7"]["imageId"] == image_id
    assert ours[f"{base}/gone:1"]["digest"] == gone_digest
    assert ours[f"{base}/gone:1"]["imageId"] == gone_id  # from the daemon's tag event: the image is gone
    assert ours[f"{base}/gone:1"]["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert PIPELINE_START_SOURCE in body["collector"]["discovery"]


def test_ring_buffer_fallback_reports_the_same_fields_as_the_watcher(registry, tmp_path):
    """Two jobs see the same pushes: one through its watcher, one whose watcher died right after
    pre-job (so post-job falls back to the ring buffer and resolves after the fact - after a
    pushed tag moved to another image and another pushed image was deleted)."""
    base = f"{registry}/it-{uuid.uuid4().hex[:10]}"
    engines = tmp_path / "engines"  # one agent host
    watched = azure_env(tmp_path / "watched", IMAGETRAIL_ENGINE_DIR=str(engines))
    fallback = azure_env(tmp_path / "fallback", IMAGETRAIL_ENGINE_DIR=str(engines))
    for env in (watched, fallback):
        assert collect("pre-job", env).warnings() == []
    kill_watcher(fallback)
    wait_for(lambda: any(line.startswith('{"type":"watching"') for line in _watcher_lines(watched)), 30,
             "the watcher to connect")

    app_labels = {"org.opencontainers.image.source": SOURCE, "org.opencontainers.image.revision": REVISION}
    gone_labels = {"org.opencontainers.image.title": "gone", "org.opencontainers.image.version": "1"}
    app_id = import_image(f"{base}/app:1.0", {**app_labels, "com.example.not-oci": "x"})
    docker("tag", f"{base}/app:1.0", f"{base}/app:latest")
    worker_id = import_image(f"{base}/worker:2")
    gone_id = import_image(f"{base}/gone:1", gone_labels)
    references = [f"{base}/app:1.0", f"{base}/app:latest", f"{base}/worker:2", f"{base}/gone:1"]
    digests = {reference: push(reference) for reference in references}
    # The watcher resolves each push as it happens; only then does the job change things.
    wait_for(lambda: {e["reference"] for e in watcher_pushes(watched)} >= set(references), 30, "the watcher")
    docker("rmi", f"{base}/gone:1")  # the image is deleted
    docker("tag", f"{base}/worker:2", f"{base}/app:1.0")  # the pushed tag now names another image

    bodies = []
    for name, env in (("watched", watched), ("fallback", fallback)):
        report_file = tmp_path / f"{name}.json"
        post = collect("post-job", env, "--dry-run", "--report-file", str(report_file))
        assert post.returncode == 0 and post.warnings() == [], post.output
        body = json.loads(report_file.read_text())
        validate(body)
        bodies.append(body)
    watched_body, fallback_body = bodies
    assert watched_body["collector"]["discovery"][0] == "watcher: daemon events streamed from the job start"
    assert fallback_body["collector"]["discovery"][0].startswith("watcher: started but never connected")

    expected = {
        f"{base}/app:1.0": (digests[f"{base}/app:1.0"], app_id, app_labels),
        f"{base}/app:latest": (digests[f"{base}/app:latest"], app_id, app_labels),
        f"{base}/worker:2": (digests[f"{base}/worker:2"], worker_id, {}),
        f"{base}/gone:1": (digests[f"{base}/gone:1"], gone_id, gone_labels),
    }
    for body in bodies:
        got = {p["reference"]: (p["digest"], p["imageId"], p["labels"]) for p in _ours(body, base)}
        assert got == expected
    # Field by field the same, but for the media type: only the registry (asked for the deleted
    # image, after the fact) tells it.
    by_reference = {p["reference"]: p for p in _ours(watched_body, base)}
    for push_entry in _ours(fallback_body, base):
        twin = dict(by_reference[push_entry["reference"]])
        if push_entry["reference"] == f"{base}/gone:1":
            assert push_entry["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
            twin["mediaType"] = push_entry["mediaType"]
        assert push_entry == twin
