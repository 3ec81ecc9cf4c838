"""Runs the action's entry points the way a GitHub runner does.

For each step the runner gives the process the job's GITHUB_* / RUNNER_* variables, the
step's inputs as INPUT_<NAME> (upper-cased, spaces to underscores, hyphens kept), a fresh
GITHUB_STATE, GITHUB_OUTPUT and GITHUB_STEP_SUMMARY file, and STATE_<name> for every value
an earlier step of the same action wrote to its state file. After the step it reads those
files back; this module parses them with the runner's rules (``name=value`` lines or the
``name<<DELIMITER`` heredoc form).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from tests.support.podman import podman_env

REPO_ROOT = Path(__file__).resolve().parents[2]
ACTION_DIR = REPO_ROOT / "github-action"
NODE = shutil.which("node") or "node"


class FileCommandError(ValueError):
    pass


def parse_file_command(text: str) -> Dict[str, str]:
    """Parse a GITHUB_STATE / GITHUB_OUTPUT file as the runner does (last value of a name wins)."""
    values: Dict[str, str] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line:
            continue
        equals, heredoc = line.find("="), line.find("<<")
        if equals >= 0 and (heredoc < 0 or equals < heredoc):
            name, value = line[:equals], line[equals + 1:]
        elif heredoc >= 0:
            name, delimiter = line[:heredoc], line[heredoc + 2:]
            if not delimiter:
                raise FileCommandError(f"empty heredoc delimiter for {name!r}")
            body: List[str] = []
            while index < len(lines) and lines[index] != delimiter:
                body.append(lines[index])
                index += 1
            if index >= len(lines):
                raise FileCommandError(f"heredoc for {name!r} is not closed by {delimiter!r}")
            index += 1
            value = "\n".join(body)
        else:
            raise FileCommandError(f"invalid file command line: {line!r}")
        if not name:
            raise FileCommandError(f"file command line without a name: {line!r}")
        values[name] = value
    return values


def input_variable(name: str) -> str:
    return "INPUT_" + name.replace(" ", "_").upper()


def workflow_commands(stdout: str, name: str) -> List[str]:
    """Messages of ``::name::message`` lines (percent-decoding like the runner)."""
    prefix = f"::{name}::"
    found = []
    for line in stdout.splitlines():
        if line.startswith(prefix):
            message = line[len(prefix):]
            found.append(message.replace("%0A", "\n").replace("%0D", "\r").replace("%25", "%"))
    return found


@dataclass
class StepResult:
    phase: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    state: Dict[str, str]
    outputs: Dict[str, str]
    summary: str

    @property
    def warnings(self) -> List[str]:
        return workflow_commands(self.stdout, "warning")

    @property
    def masks(self) -> List[str]:
        return workflow_commands(self.stdout, "add-mask")

    @property
    def log(self) -> str:
        return self.stdout + self.stderr


@dataclass
class ActionRun:
    """One use of the action in one job: pre, main and post share its state."""

    job_env: Mapping[str, str]
    inputs: Mapping[str, str]
    work_dir: Path
    action_dir: Path = ACTION_DIR
    state: Dict[str, str] = field(default_factory=dict)
    steps: List[StepResult] = field(default_factory=list)

    def _step_env(self, phase: str) -> Dict[str, str]:
        files = {}
        for variable, stem in (("GITHUB_STATE", "state"), ("GITHUB_OUTPUT", "output"),
                               ("GITHUB_STEP_SUMMARY", "summary")):
            path = self.work_dir / f"{phase}_{stem}_{len(self.steps)}"
            path.write_text("", encoding="utf-8")
            files[variable] = str(path)
        env = {**self.job_env, **files}
        env.update({input_variable(name): value for name, value in self.inputs.items()})
        env.update({f"STATE_{name}": value for name, value in self.state.items()})
        return env

    def step(self, phase: str, timeout: float = 180.0, extra_env: Optional[Mapping[str, str]] = None) -> StepResult:
        env = self._step_env(phase)
        env.update(extra_env or {})
        started = time.monotonic()
        process = subprocess.run([NODE, str(self.action_dir / f"{phase}.js")], env=env, cwd=self.work_dir,
                                 capture_output=True, text=True, timeout=timeout)
        seconds = time.monotonic() - started
        state = parse_file_command(Path(env["GITHUB_STATE"]).read_text(encoding="utf-8"))
        outputs = parse_file_command(Path(env["GITHUB_OUTPUT"]).read_text(encoding="utf-8"))
        summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text(encoding="utf-8")
        self.state.update(state)
        result = StepResult(phase, process.returncode, process.stdout, process.stderr, seconds,
                            state, outputs, summary)
        self.steps.append(result)
        return result


def job_env(work_dir: Path, repository: str, **overrides: str) -> Dict[str, str]:
    """The variables a GitHub-hosted runner sets for a job (GitHub Docs, "Variables reference")."""
    owner = repository.split("/", 1)[0]
    runner_temp = work_dir / "runner_temp"
    runner_temp.mkdir(exist_ok=True)
    workspace = work_dir / "workspace"
    workspace.mkdir(exist_ok=True)
    (work_dir / "toolcache").mkdir(exist_ok=True)  # RUNNER_TOOL_CACHE: where the host's breaker state lives
    base = {
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_API_URL": "https://api.github.com",
        "GITHUB_REPOSITORY": repository,
        "GITHUB_REPOSITORY_ID": "712345678",
        "GITHUB_REPOSITORY_OWNER": owner,
        "GITHUB_REPOSITORY_OWNER_ID": "9919",
        "GITHUB_WORKFLOW": "Build and push",
        "GITHUB_WORKFLOW_REF": f"{repository}/.github/workflows/build.yml@refs/heads/main",
        "GITHUB_WORKFLOW_SHA": "4f0d1e2c3b4a59687766554433221100ffeeddcc",
        "GITHUB_RUN_ID": "9876543210",
        "GITHUB_RUN_NUMBER": "42",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_JOB": "image",
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_REF_NAME": "main",
        "GITHUB_REF_TYPE": "branch",
        "GITHUB_SHA": "4f0d1e2c3b4a59687766554433221100ffeeddcc",
        "GITHUB_ACTOR": "mona",
        "GITHUB_ACTOR_ID": "583231",
        "GITHUB_TRIGGERING_ACTOR": "mona",
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_ACTION": "__imagetrail_github-action",
        "GITHUB_ACTION_REPOSITORY": "imagetrail/imagetrail",
        "RUNNER_OS": "Linux",
        "RUNNER_ARCH": "X64",
        "RUNNER_NAME": "GitHub Actions 7",
        "RUNNER_ENVIRONMENT": "github-hosted",
        "RUNNER_TEMP": str(runner_temp),
        "RUNNER_TOOL_CACHE": str(work_dir / "toolcache"),
    }
    # The machine's own basics (PATH for docker/python, HOME, DOCKER_HOST); nothing else leaks in.
    for name in ("PATH", "HOME", "LANG", "DOCKER_HOST", "DOCKER_CONFIG", "SYSTEMROOT"):
        if name in os.environ:
            base[name] = os.environ[name]
    base.update(podman_env(work_dir / "podman"))  # this job's own podman event log, not the machine's
    base.update(overrides)
    return base
