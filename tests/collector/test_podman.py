"""Pushes made with podman, read from podman's own event log: real podman (vfs storage, its own event
file) pushing to the real registry, then the real post-job step."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict

import pytest

from tests.collector.support import azure_env, collect, import_image, push, validate
from tests.support import services
from tests.support.podman import podman_env

pytestmark = pytest.mark.e2e

MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
REVISION = "9c0ffee5e1f0a2b3c4d5e6f708192a3b4c5d6e7f"


@pytest.fixture
def podman(tmp_path, registry) -> Dict[str, str]:
    """Environment for a podman of this test alone: vfs storage, and its own event log and state."""
    for tool in ("podman", "skopeo"):
        if shutil.which(tool) is None:
            services.unavailable(tool, "not installed")
    return podman_env(tmp_path / "podman", storage=True)


def run(env: Dict[str, str], *args: str) -> str:
    done = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def build(env: Dict[str, str], context: Path, reference: str, labels: Dict[str, str]) -> str:
    context.mkdir(parents=True, exist_ok=True)
    (context / "id.txt").write_text(uuid.uuid4().hex)
    lines = ["FROM scratch", "COPY id.txt /"] + [f'LABEL {k}="{v}"' for k, v in labels.items()]
    (context / "Containerfile").write_text("\n".join(lines) + "\n")
    run(env, "podman", "build", "-q", "-t", reference, str(context))
    return "sha256:" + run(env, "podman", "image", "inspect", "--format", "{{.Id}}", reference)


def registry_digest(registry: str, repository: str, tag: str) -> str:
    request = urllib.request.Request(f"http://{registry}/v2/{repository}/manifests/{tag}", method="HEAD",
                                     headers={"Accept": MANIFEST_TYPES})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Docker-Content-Digest"]


def test_podman_pushes_of_the_job_are_reported_with_their_registry_digests(registry, podman, tmp_path):
    namespace = f"collector-podman-{uuid.uuid4().hex[:10]}"
    env = azure_env(tmp_path, **podman)
    app = f"{registry}/{namespace}/app"
    labels = {"org.opencontainers.image.source": "https://example.com/shop.git",
              "org.opencontainers.image.revision": REVISION, "com.example.private": "x"}
    app_id = build(env, tmp_path / "app", f"{app}:1", labels)
    run(env, "podman", "push", "--tls-verify=false", f"{app}:1", f"{app}:before-the-job")

    time.sleep(1.05)  # the pipeline start time has whole seconds: stay clear of the push before the job
    start = datetime.now(timezone.utc).replace(microsecond=0)
    env["SYSTEM_PIPELINESTARTTIME"] = start.strftime("%Y-%m-%d %H:%M:%S+00:00")
    run(env, "podman", "push", "--tls-verify=false", f"{app}:1")
    # The destination named with its transport, and a tag pushed twice (the registry keeps the later image).
    run(env, "podman", "push", "--tls-verify=false", f"{app}:1", f"docker://{app}:release")
    run(env, "podman", "push", "--tls-verify=false", f"{app}:1", f"{app}:moving")
    other_id = build(env, tmp_path / "other", f"{app}:2", {})
    run(env, "podman", "push", "--tls-verify=false", f"{app}:2", f"{app}:moving")
    # Not a registry push: no report entry.
    run(env, "podman", "push", f"{app}:1", f"oci-archive:{tmp_path / 'app.tar'}")

    report_file = tmp_path / "report.json"
    post = collect("post-job", {**env, "IMAGETRAIL_DRY_RUN": "true",
                                "IMAGETRAIL_REPORT_FILE": str(report_file)})
    assert post.returncode == 0, post.output
    assert len(post.warnings()) == 1, post.output
    [warning] = post.warnings()
    assert "1 pushed reference(s) reported without a digest" in warning and f"{app}:moving" in warning
    body = json.loads(report_file.read_text())
    validate(body)
    assert "podman event log since the job start" in body["collector"]["discovery"]
    ours = sorted((p for p in body["pushes"] if p["repository"] == f"{namespace}/app"),
                  key=lambda p: p["pushedAt"])
    oci = {k: v for k, v in labels.items() if k.startswith("org.opencontainers.image.")}
    got = [(p["reference"], p["tag"], p["digest"], p["imageId"], p["labels"]) for p in ours]
    assert got == [
        (f"{app}:1", "1", registry_digest(registry, f"{namespace}/app", "1"), app_id, oci),
        (f"{app}:release", "release", registry_digest(registry, f"{namespace}/app", "release"), app_id, oci),
        (f"{app}:moving", "moving", None, app_id, oci),
        (f"{app}:moving", "moving", registry_digest(registry, f"{namespace}/app", "moving"), other_id, {}),
    ]
    assert "pushed again later in the job" in ours[2]["digestError"]
    assert all(p["registry"] == registry for p in ours)
    # podman converts the manifest while pushing: the registry's digest, not the local image's.
    local = run(env, "podman", "image", "inspect", "--format", "{{.Digest}}", f"{app}:1")
    assert ours[0]["digest"] != local


def test_nothing_pushed_with_podman_is_quiet(podman, tmp_path):
    env = azure_env(tmp_path, **podman, SYSTEM_PIPELINESTARTTIME=datetime.now(timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S+00:00"), DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    post = collect("post-job", {**env, "IMAGETRAIL_DRY_RUN": "true"})
    assert post.returncode == 0
    assert [w for w in post.warnings() if "podman" in w] == [], post.output


@pytest.mark.parametrize("text, expected", [
    ("2026-11-30T06:05:03.545083535Z", 1796018703_545083535),
    ("2026-11-30T08:05:03.5+02:00", 1796018703_500000000),
    ("2026-11-30T01:05:03-05:00", 1796018703_000000000),
    ("2026-11-30 06:05:03", None),
    (None, None),
])
def test_podman_event_times(text, expected):
    from imagetrail.collector.podman import parse_time

    assert parse_time(text) == expected


@pytest.mark.parametrize("name, expected", [
    ("127.0.0.1:5000/ns/app:1", "127.0.0.1:5000/ns/app:1"),
    ("docker://quay.io/ns/app:1", "quay.io/ns/app:1"),
    ("localhost:5000/app", "localhost:5000/app"),
    ("oci-archive:/tmp/app.tar", None),
    ("dir:/tmp/app", None),
    ("docker-archive:/tmp/x.tar:app:1", None),
    ("not a reference", None),
])
def test_only_registry_destinations_are_pushes(name, expected):
    from imagetrail.collector.podman import registry_reference

    assert registry_reference(name) == expected


def test_a_podman_that_cannot_be_asked_is_noted_not_warned(tmp_path, registry):
    """podman installed but broken (here: a containers.conf it cannot parse). The job may never have used
    podman, so this is an info line and a note in the report, not a warning on every job of the agent."""
    if shutil.which("podman") is None:
        services.unavailable("podman", "not installed")
    broken = tmp_path / "broken.conf"
    broken.write_text("[engine\nevents_logger = \n", encoding="utf-8")
    start = datetime.now(timezone.utc).replace(microsecond=0)
    time.sleep(1.05)
    env = azure_env(tmp_path, CONTAINERS_CONF=str(broken),
                    SYSTEM_PIPELINESTARTTIME=start.strftime("%Y-%m-%d %H:%M:%S+00:00"))
    reference = f"{registry}/collector-{uuid.uuid4().hex[:10]}/app:1"
    import_image(reference)
    digest = push(reference)
    report_file = tmp_path / "report.json"
    post = collect("post-job", {**env, "IMAGETRAIL_DRY_RUN": "true",
                                "IMAGETRAIL_REPORT_FILE": str(report_file)})
    assert post.returncode == 0 and post.warnings() == [], post.output
    assert "podman's event log was not read" in post.stdout
    body = json.loads(report_file.read_text())
    assert [p["digest"] for p in body["pushes"] if p["reference"] == reference] == [digest]
    assert any(s.startswith("podman event log: unavailable (podman events failed") for s in
               body["collector"]["discovery"]), body["collector"]["discovery"]
