"""``docker push --all-tags``: the engine logs one push event naming the repository alone; every
tag pushed must be reported with its own digest, by the watcher and by the ring-buffer fallback."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone

import pytest

from tests.collector.support import (
    azure_env,
    collect,
    docker,
    import_image,
    kill_watcher,
    validate,
    wait_for,
    watcher_pushes,
)

pytestmark = pytest.mark.e2e


def _repo_digests(reference: str, repository: str) -> set:
    found = json.loads(docker("image", "inspect", "--format", "{{json .RepoDigests}}", reference))
    return {entry.split("@", 1)[1] for entry in found if entry.split("@", 1)[0] == repository}


def _ours(body: dict, repository: str) -> dict:
    return {p["reference"]: p for p in body["pushes"] if p["reference"].startswith(repository + ":")
            or p["reference"] == repository}


def _push_all_tags(repository: str) -> None:
    out = docker("push", "--all-tags", repository)
    assert out.count("digest: sha256:") == 3, out  # three tags, two images


def _three_tags(repository: str) -> dict:
    """Tags 1 and 2 name one image, tag 3 another; returns reference -> image id."""
    first = import_image(f"{repository}:1", {"org.opencontainers.image.revision": "a" * 40})
    docker("tag", f"{repository}:1", f"{repository}:2")
    second = import_image(f"{repository}:3")
    return {f"{repository}:1": first, f"{repository}:2": first, f"{repository}:3": second}


def _assert_every_tag(body: dict, repository: str, images: dict) -> None:
    validate(body)
    pushes = _ours(body, repository)
    assert set(pushes) == set(images), sorted(pushes)
    for reference, image_id in images.items():
        push = pushes[reference]
        [expected] = _repo_digests(reference, repository)
        assert (push["tag"], push["digest"], push["imageId"], push["digestError"]) == (
            reference.rsplit(":", 1)[1], expected, image_id, None)
    assert pushes[f"{repository}:1"]["digest"] == pushes[f"{repository}:2"]["digest"]
    assert pushes[f"{repository}:1"]["digest"] != pushes[f"{repository}:3"]["digest"]
    assert len({p["pushedAt"] for p in pushes.values()}) == 1  # one push event


@pytest.mark.parametrize("watcher", ["watcher", "ring-buffer fallback"])
def test_every_tag_of_an_all_tags_push_is_reported_and_no_later_one(registry, tmp_path, watcher):
    """By the watcher (which sees the push as it happens) and by the ring-buffer fallback (after the
    fact, when a tag given later in the job must be told apart by the daemon's tag events)."""
    repository = f"{registry}/collector-{uuid.uuid4().hex[:10]}/app"
    env = azure_env(tmp_path)
    pre = collect("pre-job", env)
    assert pre.returncode == 0 and pre.warnings() == [], pre.output
    if watcher != "watcher":
        kill_watcher(env)
    images = _three_tags(repository)
    _push_all_tags(repository)
    if watcher == "watcher":
        wait_for(lambda: {e["reference"] for e in watcher_pushes(env)} >= set(images), 30, "the watcher")
    docker("tag", f"{repository}:3", f"{repository}:later")  # later in the job: not part of the push
    report_file = tmp_path / "report.json"
    post = collect("post-job", env, "--dry-run", "--report-file", str(report_file))
    assert post.returncode == 0 and post.warnings() == [], post.output
    _assert_every_tag(json.loads(report_file.read_text()), repository, images)


def test_all_tags_push_whose_tags_are_gone_is_kept_with_the_reason(registry, tmp_path):
    repository = f"{registry}/collector-{uuid.uuid4().hex[:10]}/app"
    start = datetime.now(timezone.utc).replace(microsecond=0)
    time.sleep(1.05)
    _three_tags(repository)
    _push_all_tags(repository)
    docker("rmi", f"{repository}:1", f"{repository}:2", f"{repository}:3")
    env = azure_env(tmp_path, SYSTEM_PIPELINESTARTTIME=start.strftime("%Y-%m-%d %H:%M:%S+00:00"))
    report_file = tmp_path / "report.json"
    post = collect("post-job", {**env, "IMAGETRAIL_DRY_RUN": "true",
                                "IMAGETRAIL_REPORT_FILE": str(report_file)})
    assert post.returncode == 0, post.output
    [warning] = post.warnings()
    assert "reported without a digest" in warning and repository in warning
    body = json.loads(report_file.read_text())
    validate(body)
    [push] = _ours(body, repository).values()
    assert (push["reference"], push["tag"], push["digest"]) == (repository, None, None)
    assert "pushed with --all-tags" in push["digestError"]

