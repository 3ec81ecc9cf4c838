"""End to end: the action in a job with `id-token: write`, a local GitHub OIDC issuer, the real
`imagetrail serve`, the real Docker engine and registry. The pushed digest must be traceable; a token
for another repository or run must be refused, with the report kept and the refusal said once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Dict, Iterator, Optional

import httpx
import pytest

from tests.github.images import build_image, push, registry_digest, remove_images
from tests.github.runner import REPO_ROOT, ActionRun, StepResult, job_env
from tests.support.live_server import running_server
from tests.support.oidc_provider import LocalIssuer, github_claims

pytestmark = pytest.mark.e2e

AUDIENCE = "api://imagetrail-e2e"
OWNER = "octo-org"


class Backend:
    def __init__(self, url: str, reader_key: str, issuer: LocalIssuer) -> None:
        self.url, self.reader_key, self.issuer = url, reader_key, issuer

    def trail(self, digest: str) -> httpx.Response:
        return httpx.get(f"{self.url}/v1/images/{digest}/trail",
                         headers={"Authorization": f"Bearer {self.reader_key}"}, timeout=30)


def _create_reader_key(database_url: str) -> str:
    env = {**os.environ, "IMAGETRAIL_DATABASE_URL": database_url,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-m", "imagetrail", "keys", "create", "--org", "*", "--scope", "read",
                             "--description", "github e2e reader"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def backend(sqlite_url, registry) -> Iterator[Backend]:
    with LocalIssuer() as issuer:
        server_env = {"IMAGETRAIL_GITHUB_ISSUER": issuer.github_issuer, "IMAGETRAIL_TRUST_GITHUB_OWNERS": OWNER,
                      "IMAGETRAIL_TOKEN_AUDIENCE": AUDIENCE,
                      "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "src"),
                                                                  os.environ.get("PYTHONPATH")]))}
        with running_server(sqlite_url, env=server_env) as url:
            yield Backend(url, _create_reader_key(sqlite_url), issuer)


@pytest.fixture
def images() -> Iterator[list]:
    made: list = []
    yield made
    remove_images(made)


def _job(tmp_path: Path, backend: Backend, id_token: bool = True, **overrides: str):
    repository = f"{OWNER}/svc-{uuid.uuid4().hex[:8]}"
    env = job_env(tmp_path, repository, GITHUB_RUN_ID=str(uuid.uuid4().int % 10**10), **overrides)
    backend.issuer.claims = github_claims(env)
    if id_token:
        env.update(backend.issuer.runner_env())
    run = ActionRun(job_env=env, work_dir=tmp_path,
                    inputs={"backend-url": backend.url, "audience": AUDIENCE, "deadline-seconds": "40"})
    return env, run


def _run_job(tmp_path: Path, run: ActionRun, registry: str, images: list) -> Dict[str, object]:
    name = f"gh-e2e-{uuid.uuid4().hex[:10]}/api"
    reference = f"{registry}/{name}:1.0"
    images.append(reference)
    pre = run.step("pre")
    build_image(tmp_path / "ctx", reference)
    push(reference)
    main = run.step("main")
    post = run.step("post")
    for step in (pre, main, post):
        assert step.returncode == 0, step.log
    return {"reference": reference, "name": name, "digest": registry_digest(registry, name, "1.0"), "post": post,
            "steps": (pre, main, post)}


def _report_file(post: StepResult, env: Dict[str, str]) -> Path:
    return Path(post.outputs.get("report-file") or
                Path(env["RUNNER_TEMP"]) / f"imagetrail-report-{env['GITHUB_RUN_ID']}-1-image.json")


def test_pushed_digest_is_traceable_to_the_run(tmp_path, backend, registry, images):
    env, run = _job(tmp_path, backend)
    job = _run_job(tmp_path, run, registry, images)
    post: StepResult = job["post"]
    assert post.warnings == [], post.log

    requests = backend.issuer.token_requests()
    assert len(requests) == 1
    assert requests[0].status == 200
    assert requests[0].query["audience"] == [AUDIENCE]
    token = backend.issuer.issued[0]
    assert token not in "".join(step.log for step in job["steps"])
    for step in (job["steps"][0], job["steps"][2]):  # pre and post mask the runner's request token first
        assert step.stdout.splitlines()[0] == f"::add-mask::{backend.issuer.request_token}"

    response = backend.trail(job["digest"])
    assert response.status_code == 200, response.text
    pushes = [p for p in response.json()["pushes"] if p["reference"] == job["reference"]]
    assert len(pushes) == 1, response.json()
    trail = pushes[0]
    assert trail["digest"] == job["digest"]
    assert trail["system"] == "github"
    assert trail["run"]["id"] == env["GITHUB_RUN_ID"]
    assert trail["run"]["attempt"] == 1
    run_page = f"https://github.com/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    assert trail["run"]["url"].startswith(run_page)
    assert (trail["organization"], trail["project"]) == (OWNER, env["GITHUB_REPOSITORY"])
    assert trail["source"]["commit"] == env["GITHUB_SHA"]
    assert trail["source"]["commit_url"] == f"https://github.com/{env['GITHUB_REPOSITORY']}/commit/{env['GITHUB_SHA']}"
    assert trail["requester"]["name"] == "mona"
    assert trail["evidence"]["identity_kind"] == "github"
    assert trail["evidence"]["report_id"] == post.outputs["report-id"]
    report = json.loads(Path(post.outputs["report-file"]).read_text(encoding="utf-8"))
    assert report["reportId"] == post.outputs["report-id"]
    assert post.outputs["pushes"] == str(len(report["pushes"]))


@pytest.mark.parametrize("claim_overrides", [
    {"repository": f"{OWNER}/someone-else", "repository_id": "1"},
    {"run_id": "1"},
])
def test_token_for_another_repository_or_run_is_refused_and_the_report_kept(
        tmp_path, backend, registry, images, claim_overrides):
    env, run = _job(tmp_path, backend)
    backend.issuer.claims.update(claim_overrides)  # the token now speaks for another job
    job = _run_job(tmp_path, run, registry, images)
    post: StepResult = job["post"]

    response = backend.trail(job["digest"])
    assert response.status_code in (200, 404), response.text
    if response.status_code == 200:
        assert not [p for p in response.json()["pushes"] if p["reference"] == job["reference"]]

    assert len(post.warnings) == 1, post.log  # one clear line
    kept = _report_file(post, env)
    assert kept.is_file(), post.log
    assert str(kept) in post.warnings[0] or "job summary" in post.warnings[0]
    report = json.loads(kept.read_text(encoding="utf-8"))
    ours = [(p["reference"], p["digest"]) for p in report["pushes"] if p["repository"] == job["name"]]
    assert ours == [(job["reference"], job["digest"])]
    assert job["digest"] in post.summary  # kept with the run, visible on its page


def test_without_id_token_permission_one_line_and_the_job_succeeds(tmp_path, backend, registry, images):
    env, run = _job(tmp_path, backend, id_token=False)
    job = _run_job(tmp_path, run, registry, images)
    post: StepResult = job["post"]
    mentions = [line for step in job["steps"] for line in step.stdout.splitlines() if "id-token: write" in line]
    assert len(mentions) == 1, post.log
    assert backend.issuer.token_requests() == []
    kept = _report_file(post, env)
    assert kept.is_file(), post.log
    assert job["digest"] in kept.read_text(encoding="utf-8")
    assert job["digest"] in post.summary
    response: Optional[httpx.Response] = backend.trail(job["digest"])
    assert response.status_code == 404 or not response.json()["pushes"]
