"""pre -> real pushes -> main -> post against the real Docker engine and registry; the report is read
from the `report-file` input (dry-run: no backend here, see test_backend_e2e.py for that)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import jsonschema
import pytest

from tests.github.images import build_image, docker, push, registry_digest, remove_images
from tests.github.runner import REPO_ROOT, ActionRun, job_env

pytestmark = pytest.mark.e2e

SCHEMA = json.loads((REPO_ROOT / "src/imagetrail/schemas/report-v1.schema.json").read_text(encoding="utf-8"))


@pytest.fixture
def images(registry):
    made = []
    yield made
    remove_images(made)


@pytest.mark.parametrize("main_position", ["before-push", "after-push"])
def test_pushes_of_the_job_are_reported_with_their_registry_digests(tmp_path, registry, images, main_position):
    name = f"gh-{uuid.uuid4().hex[:10]}/app"
    repository = f"octo-org/{name.split('/')[0]}"
    env = job_env(tmp_path, repository, GITHUB_RUN_ATTEMPT="2", GITHUB_TRIGGERING_ACTOR="hubot")
    report_file = tmp_path / "out" / "report.json"
    run = ActionRun(job_env=env, inputs={"dry-run": "true", "report-file": str(report_file)}, work_dir=tmp_path)

    pre = run.step("pre")
    assert pre.returncode == 0, pre.log
    assert pre.warnings == [], pre.log
    if main_position == "before-push":
        run.step("main")
    first, second = f"{registry}/{name}:1.0", f"{registry}/{name}:latest"
    images += [first, second]
    build_image(tmp_path / "ctx", first, labels={"org.opencontainers.image.revision": env["GITHUB_SHA"]})
    docker("tag", first, second)
    push(first, second)
    if main_position == "after-push":
        run.step("main")
    post = run.step("post")
    assert post.returncode == 0, post.log
    assert not [w for w in post.warnings if "deadline" in w.lower()], post.log  # the default fits the collector

    report = json.loads(report_file.read_text(encoding="utf-8"))
    jsonschema.validate(report, SCHEMA)
    expected = registry_digest(registry, name, "1.0")
    assert expected == registry_digest(registry, name, "latest")
    # The daemon's events are machine-wide: on a shared test machine other jobs push too.
    pushes = {p["reference"]: p for p in report["pushes"] if p["repository"] == name}
    assert set(pushes) == {first, second}, report["pushes"]
    for reference, tag in ((first, "1.0"), (second, "latest")):
        assert pushes[reference]["digest"] == expected
        assert (pushes[reference]["registry"], pushes[reference]["repository"], pushes[reference]["tag"]) == (
            registry, name, tag)

    ctx = report["context"]
    assert ctx["system"] == "github"
    assert ctx["organization"] == {"id": "9919", "name": "octo-org"}
    assert ctx["project"] == {"id": "712345678", "name": repository}
    assert ctx["pipeline"] == {"id": f"{repository}/.github/workflows/build.yml", "name": "Build and push"}
    assert ctx["run"] == {"id": "9876543210", "number": "42", "attempt": 2, "reason": "push",
                          "url": f"https://github.com/{repository}/actions/runs/9876543210/attempts/2"}
    assert ctx["repository"]["commit"] == env["GITHUB_SHA"]
    assert ctx["repository"]["branch"] == "refs/heads/main"
    assert ctx["requester"] == {"id": None, "name": "hubot", "email": None}
    assert ctx["agent"] == {"name": "GitHub Actions 7", "os": "Linux", "hostType": "github-hosted"}

    assert post.outputs == {"report-id": report["reportId"], "pushes": str(len(report["pushes"])),
                            "report-file": str(report_file)}


def test_default_report_file_is_in_runner_temp(tmp_path, registry, images):
    name = f"gh-{uuid.uuid4().hex[:10]}/svc"
    env = job_env(tmp_path, "octo-org/defaults")
    run = ActionRun(job_env=env, inputs={"dry-run": "true"}, work_dir=tmp_path)
    assert run.step("pre").returncode == 0
    reference = f"{registry}/{name}:7"
    images.append(reference)
    build_image(tmp_path / "ctx", reference)
    push(reference)
    post = run.step("post")
    assert post.returncode == 0, post.log
    report_file = Path(post.outputs["report-file"])
    assert report_file.parent == Path(env["RUNNER_TEMP"])
    assert report_file.name == "imagetrail-report-9876543210-1-image.json"
    report = json.loads(report_file.read_text(encoding="utf-8"))
    assert [(p["reference"], p["digest"]) for p in report["pushes"] if p["repository"] == name] == [
        (reference, registry_digest(registry, name, "7"))]
    assert post.outputs["pushes"] == str(len(report["pushes"]))
