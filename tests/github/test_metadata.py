"""action.yml and the example workflow: the structure GitHub requires of them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.github.runner import (
    ACTION_DIR,
    NODE,
    REPO_ROOT,
    FileCommandError,
    input_variable,
    parse_file_command,
)

EXAMPLE = REPO_ROOT / "examples" / "github-workflow.yml"
INPUTS = {"backend-url", "audience", "api-key", "disable", "deadline-seconds", "report-file", "dry-run"}
# Node runtimes GitHub runners accept for JavaScript actions (GitHub Docs, "Metadata syntax
# for GitHub Actions", runs.using); node20 is deprecated in favour of node24.
SUPPORTED_RUNTIMES = {"node20", "node24"}


def load_yaml(path: Path) -> dict:
    # YAML 1.1 loaders read the key `on` as True; GitHub reads it as the string "on".
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if True in data:
        data["on"] = data.pop(True)
    return data


@pytest.fixture(scope="module")
def action() -> dict:
    return load_yaml(ACTION_DIR / "action.yml")


def test_action_runs_pre_main_and_post_on_a_supported_node(action):
    runs = action["runs"]
    assert runs["using"] in SUPPORTED_RUNTIMES
    for key in ("pre", "main", "post"):
        entry = ACTION_DIR / runs[key]
        assert entry.is_file(), f"runs.{key} names {runs[key]}, which does not exist"
        check = subprocess.run([NODE, "--check", str(entry)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
    # post must run even when an earlier step failed: a job can push, then fail.
    assert runs.get("post-if", "always()") == "always()"
    assert set(runs) <= {"using", "main", "pre", "pre-if", "post", "post-if"}


def test_action_inputs_and_outputs(action):
    assert set(action["inputs"]) == INPUTS
    for name, spec in action["inputs"].items():
        assert spec.get("description"), name
        assert spec.get("required", False) is False, f"{name}: the action must work with no inputs at all"
        assert isinstance(spec.get("default", ""), str), f"{name}: defaults are strings on the runner"
        assert re.fullmatch(r"[_a-zA-Z][a-zA-Z0-9_-]*", name)
    assert action["inputs"]["disable"]["default"] == "false"
    assert action["inputs"]["audience"]["default"] == "api://imagetrail"
    assert set(action["outputs"]) == {"report-id", "pushes", "report-file"}
    assert all(spec.get("description") for spec in action["outputs"].values())
    assert action["name"] and action["description"]


def test_input_names_keep_their_hyphens_in_the_environment():
    # @actions/core getInput: INPUT_ + upper-cased name, spaces to '_', '-' kept.
    assert input_variable("backend-url") == "INPUT_BACKEND-URL"
    assert input_variable("deadline-seconds") == "INPUT_DEADLINE-SECONDS"
    assert input_variable("my input") == "INPUT_MY_INPUT"
    script = ("const c=require(process.argv[1]);"
              "console.log(c.getInput({'INPUT_BACKEND-URL':' https://x.example '}, 'backend-url'))")
    out = subprocess.run([NODE, "-e", script, str(ACTION_DIR / "lib" / "workflow-commands.js")],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "https://x.example"


@pytest.mark.parametrize("value", ["plain", "two\nlines", "has = and << inside", "trailing\n", "", "%0A"])
def test_file_commands_written_by_the_action_read_back_by_the_runner_rules(value, tmp_path):
    target = tmp_path / "state"
    script = ("const c=require(process.argv[1]);"
              "c.appendFileCommand(process.argv[2],'first','x');"
              "c.appendFileCommand(process.argv[2],'value',process.argv[3]);")
    subprocess.run([NODE, "-e", script, str(ACTION_DIR / "lib" / "workflow-commands.js"), str(target), value],
                   check=True)
    assert parse_file_command(target.read_text(encoding="utf-8")) == {"first": "x", "value": value}


def test_the_runner_rules_reject_a_broken_heredoc():
    with pytest.raises(FileCommandError, match="not closed"):
        parse_file_command("name<<EOF\nvalue\n")
    with pytest.raises(FileCommandError, match="invalid"):
        parse_file_command("no separator here\n")


# -- the example workflow -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def example() -> dict:
    return load_yaml(EXAMPLE)


def _steps(example: dict):
    return [step for job in example["jobs"].values() for step in job["steps"]]


def test_example_is_a_workflow_with_oidc_permission(example):
    assert example["name"]
    assert "push" in example["on"]
    assert example["permissions"]["id-token"] == "write"
    assert example["permissions"]["packages"] == "write"
    for job in example["jobs"].values():
        assert job["runs-on"]
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), step  # exactly one of them


def test_example_uses_this_action_with_declared_inputs(example, action):
    uses = [step for step in _steps(example) if step.get("uses", "").split("@")[0].endswith("/github-action")]
    assert len(uses) == 1
    reference, _, version = uses[0]["uses"].partition("@")
    owner, repo, subdir = reference.split("/", 2)
    assert owner and repo and version
    assert (REPO_ROOT / subdir / "action.yml").is_file()
    assert set(uses[0]["with"]) <= set(action["inputs"])
    assert uses[0]["with"]["backend-url"].startswith("https://")
    # Before the push, so that even a reader unaware of the pre step sees it covers the job.
    steps = _steps(example)
    first_push = next(i for i, step in enumerate(steps) if "docker push" in step.get("run", ""))
    assert steps.index(uses[0]) < first_push


def test_example_logs_in_builds_and_pushes(example):
    steps = _steps(example)
    login = [s for s in steps if s.get("uses", "").startswith("docker/login-action@")]
    assert login and login[0]["with"]["registry"] == "ghcr.io"
    assert "${{ secrets." in login[0]["with"]["password"]  # never a literal secret
    scripts = "\n".join(s.get("run", "") for s in steps)
    assert "docker build" in scripts and "docker push" in scripts
    assert scripts.index("docker build") < scripts.index("docker push")
