"""GitHub context: the runner's variables mapped onto the report's PipelineContext."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from imagetrail.collector.context.github import github_context, run_url, workflow_path
from imagetrail.report import Push, Report
from tests.github.runner import job_env

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "src/imagetrail/schemas/report-v1.schema.json")
                    .read_text(encoding="utf-8"))


@pytest.fixture
def env(tmp_path):
    return job_env(tmp_path, "octo-org/shop-api", GITHUB_RUN_ATTEMPT="2", GITHUB_TRIGGERING_ACTOR="hubot",
                   GITHUB_EVENT_NAME="workflow_dispatch", RUNNER_ENVIRONMENT="self-hosted",
                   RUNNER_NAME="build-box-3")


def test_every_field_comes_from_its_variable(env):
    ctx = github_context(env)
    assert ctx.system == "github"
    assert ctx.server_url == "https://github.com"
    assert (ctx.organization.id, ctx.organization.name) == ("9919", "octo-org")
    assert (ctx.project.id, ctx.project.name) == ("712345678", "octo-org/shop-api")
    assert ctx.pipeline.id == "octo-org/shop-api/.github/workflows/build.yml"
    assert ctx.pipeline.name == "Build and push"
    assert ctx.run.id == "9876543210"
    assert ctx.run.number == "42"
    assert ctx.run.attempt == 2
    assert ctx.run.url == "https://github.com/octo-org/shop-api/actions/runs/9876543210/attempts/2"
    assert ctx.run.reason == "workflow_dispatch"
    assert (ctx.job.id, ctx.job.name, ctx.job.attempt, ctx.job.stage) == ("image", "image", None, None)
    repo = ctx.repository
    assert (repo.id, repo.name, repo.uri, repo.type) == (
        "712345678", "octo-org/shop-api", "https://github.com/octo-org/shop-api", "GitHub")
    assert repo.branch == "refs/heads/main"
    assert repo.commit == "4f0d1e2c3b4a59687766554433221100ffeeddcc"
    assert (ctx.agent.name, ctx.agent.os, ctx.agent.host_type) == ("build-box-3", "Linux", "self-hosted")


def test_requester_is_the_triggering_actor_without_invented_id_or_email(env):
    ctx = github_context(env)
    # hubot re-ran mona's run: GITHUB_ACTOR_ID is mona's id, so hubot's id is unknown.
    assert (ctx.requester.name, ctx.requester.id, ctx.requester.email) == ("hubot", None, None)


def test_requester_id_when_the_actor_triggered_the_run(env):
    env["GITHUB_TRIGGERING_ACTOR"] = "mona"
    ctx = github_context(env)
    assert (ctx.requester.name, ctx.requester.id, ctx.requester.email) == ("mona", "583231", None)


def test_missing_variables_are_none_never_invented():
    ctx = github_context({})
    assert ctx.system == "github"
    assert ctx.server_url is None
    for part in (ctx.organization, ctx.project, ctx.pipeline, ctx.run, ctx.job, ctx.repository,
                 ctx.requester, ctx.agent):
        assert all(value is None for value in vars(part).values()), part


def test_partial_environment_keeps_what_is_known():
    ctx = github_context({"GITHUB_REPOSITORY": "octo-org/shop-api", "GITHUB_RUN_ID": "7",
                          "GITHUB_SERVER_URL": "https://ghe.example.com/", "GITHUB_RUN_ATTEMPT": "x"})
    assert ctx.organization.name == "octo-org"  # owner from owner/repo when GITHUB_REPOSITORY_OWNER is absent
    assert ctx.organization.id is None
    assert ctx.run.attempt is None  # not a number: unknown, not 0
    assert ctx.run.url == "https://ghe.example.com/octo-org/shop-api/actions/runs/7"
    assert ctx.repository.uri == "https://ghe.example.com/octo-org/shop-api"
    assert ctx.requester.name is None


def test_empty_values_count_as_missing(env):
    env.update({"GITHUB_REPOSITORY_ID": "", "GITHUB_TRIGGERING_ACTOR": " ", "GITHUB_WORKFLOW_REF": ""})
    ctx = github_context(env)
    assert ctx.project.id is None
    assert ctx.requester.name == "mona"  # falls back to GITHUB_ACTOR
    assert ctx.pipeline.id is None


@pytest.mark.parametrize("ref, path", [
    ("o/r/.github/workflows/build.yml@refs/heads/main", "o/r/.github/workflows/build.yml"),
    ("o/r/.github/workflows/release.yaml@refs/tags/v1.2.0", "o/r/.github/workflows/release.yaml"),
    ("o/r/.github/workflows/ci.yml@refs/pull/12/merge", "o/r/.github/workflows/ci.yml"),
    (None, None),
])
def test_pipeline_id_is_the_workflow_path_the_same_on_every_branch(ref, path):
    assert workflow_path(ref) == path


def test_run_url_needs_server_repository_and_run():
    assert run_url(None, "o/r", "1", 1) is None
    assert run_url("https://github.com", None, "1", 1) is None
    assert run_url("https://github.com", "o/r", None, 1) is None


def test_report_with_github_context_matches_the_schema(env):
    digest = "sha256:" + "ab" * 32
    push = Push(reference="127.0.0.1:5000/shop/api:1.0", registry="127.0.0.1:5000", repository="shop/api",
                tag="1.0", digest=digest)
    body = Report(context=github_context(env), pushes=[push]).to_dict()
    jsonschema.validate(body, SCHEMA)
    assert body["context"]["agent"]["hostType"] == "self-hosted"
    assert body["context"]["requester"] == {"id": None, "name": "hubot", "email": None}
    # Another attempt of the same run is another report.
    env["GITHUB_RUN_ATTEMPT"] = "3"
    assert Report(context=github_context(env), pushes=[push]).report_id != body["reportId"]
