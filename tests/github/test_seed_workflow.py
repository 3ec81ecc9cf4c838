"""The example workflow of the seed, as a runner runs it: the action's pre step at job start, then
actions/setup-python with Python 3.8 (first on PATH for every later step, the action's post step included),
then a docker/build-push-action build and push with the default `docker` driver, plus `docker push
--all-tags`; the post step must report every pushed tag with its registry digest."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import List

import pytest

from tests.extension.support import setup_python_layout
from tests.github.images import build_image, docker, registry_digest, remove_images
from tests.github.runner import ActionRun, job_env

pytestmark = pytest.mark.e2e


def buildx_available() -> bool:
    return subprocess.run(["docker", "buildx", "version"], capture_output=True, timeout=30).returncode == 0


def build_push_action(context: Path, tags: List[str]) -> str:
    """What docker/build-push-action does with the default `docker` driver: `docker buildx build --push`.
    Where the buildx plugin is missing (Debian has no package for it), the same engine calls it makes:
    buildx builds into the engine, then pushes each tag through the engine's push API (buildx
    build/build.go, pushWithMoby: POST /images/{name}/push, one call per name)."""
    if buildx_available():
        args = [arg for tag in tags for arg in ("--tag", tag)]
        docker("buildx", "build", "--builder", "default", "--push", *args, str(context), timeout=300)
        return "buildx"
    import docker as docker_sdk

    build_image(context, tags[0])
    api = docker_sdk.APIClient(version="auto", timeout=120)
    try:
        for tag in tags:
            repository, _, name = tag.rpartition(":")
            if tag != tags[0]:
                api.tag(tags[0], repository, name)
            for line in api.push(repository, tag=name, stream=True, decode=True):
                assert "error" not in line, line
    finally:
        api.close()
    return "engine push API"


def test_setup_python_38_then_build_push_action_and_all_tags(tmp_path, registry):
    namespace = f"gh-seed-{uuid.uuid4().hex[:10]}"
    app, tools = f"{registry}/{namespace}/app", f"{registry}/{namespace}/tools"
    made = [f"{app}:latest", f"{app}:sha-1234567", f"{tools}:1", f"{tools}:2"]
    env = job_env(tmp_path, f"octo-org/{namespace}")
    report_file = tmp_path / "report.json"
    inputs = {"dry-run": "true", "report-file": str(report_file)}
    run = ActionRun(job_env=env, inputs=inputs, work_dir=tmp_path)
    try:
        pre = run.step("pre")  # at job start: before setup-python
        assert pre.returncode == 0 and pre.warnings == [], pre.log
        run.step("main")

        # - uses: actions/setup-python@v5 with python-version: '3.8': its bin folder goes first on PATH
        # ($GITHUB_PATH) for the rest of the job, with pythonLocation & co. in the environment.
        starts = tmp_path / "python38-starts"
        python38 = setup_python_layout(Path(env["RUNNER_TOOL_CACHE"]), starts)
        env.update({"PATH": f"{python38}{os.pathsep}{env['PATH']}", "pythonLocation": str(python38.parent),
                    "Python_ROOT_DIR": str(python38.parent), "Python3_ROOT_DIR": str(python38.parent),
                    "PKG_CONFIG_PATH": str(python38.parent / "lib" / "pkgconfig")})
        assert subprocess.run(["python3", "-c", "import sys; assert sys.version_info[:2] == (3, 8)"],
                              env=env, timeout=60).returncode == 0  # the job's own steps now get 3.8
        started_by_the_job = starts.read_text().count("started")

        # - uses: docker/build-push-action@v6 with push: true and two tags (default docker driver).
        build_push_action(tmp_path / "app", made[:2])
        # - run: docker push --all-tags (one engine event naming the repository alone)
        build_image(tmp_path / "tools", made[2])
        docker("tag", made[2], made[3])
        docker("push", "--all-tags", tools)

        post = run.step("post")
    finally:
        remove_images(made)
    assert post.returncode == 0, post.log
    assert post.warnings == [], post.log  # no "Python >= 3.9 is needed": the 3.8 first on PATH is passed over
    report = json.loads(report_file.read_text(encoding="utf-8"))
    pushes = {p["reference"]: p["digest"] for p in report["pushes"] if namespace in p["reference"]}
    expected = {}
    for reference in made:
        repository, tag = reference.split("/", 1)[1].rsplit(":", 1)
        expected[reference] = registry_digest(registry, repository, tag)
    assert pushes == expected
    assert pushes[made[2]] == pushes[made[3]]  # two tags of one image
    # python3 -> python3.8 is recognised by its name: the shim never started it.
    assert starts.read_text().count("started") == started_by_the_job


@pytest.mark.parametrize("backend_input", [True, False], ids=["backend-url input", "no backend-url input"])
def test_a_step_cannot_send_the_token_elsewhere_through_github_env(tmp_path, registry, backend_input):
    """An earlier step appends IMAGETRAIL_URL (and friends) to $GITHUB_ENV; the runner exports them to every
    later step, the action's post step included. The report goes only to the `backend-url` input, and
    without one it is kept, not sent to the URL from the environment."""
    from tests.collector.support import HttpStub, json_reply

    api_key = "it-gh-" + uuid.uuid4().hex
    reference = f"{registry}/gh-env-{uuid.uuid4().hex[:10]}/app:1"
    with HttpStub(lambda seen: json_reply(201, {"status": "created"})) as backend, \
            HttpStub(lambda seen: json_reply(201, {"status": "created"})) as attacker:
        env = job_env(tmp_path, "octo-org/env-redirect")
        inputs = {"api-key": api_key, **({"backend-url": backend.url} if backend_input else {})}
        run = ActionRun(job_env=env, inputs=inputs, work_dir=tmp_path)
        try:
            assert run.step("pre").returncode == 0
            github_env = tmp_path / "github_env"  # the step's `echo NAME=value >> "$GITHUB_ENV"`
            github_env.write_text(f"IMAGETRAIL_URL={attacker.url}\nIMAGETRAIL_AUDIENCE=api://attacker\n"
                                  f"IMAGETRAIL_ENTRA_AUTHORITY_HOST={attacker.url}\nIMAGETRAIL_API_KEY=stolen\n")
            exported = dict(line.split("=", 1) for line in github_env.read_text().splitlines())
            build_image(tmp_path / "ctx", reference)
            docker("push", reference)
            post = run.step("post", extra_env=exported)
        finally:
            remove_images([reference])
    assert post.returncode == 0, post.log
    assert attacker.requests == []
    sent = [seen for seen in backend.requests if seen.path == "/v1/reports"]
    if backend_input:
        assert post.warnings == [], post.log
        assert [seen.headers["authorization"] for seen in sent] == [f"Bearer {api_key}"]
        assert reference in [p["reference"] for p in json.loads(sent[0].body)["pushes"]]
    else:
        assert sent == []
        assert len(post.warnings) == 1, post.log  # the report is kept where the job can find it, and says so
