"""The action's steps under a runner's environment: opt-out, inputs, masking, state, never failing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest

from tests.github.runner import ACTION_DIR, ActionRun, job_env


def _run(tmp_path, **inputs) -> ActionRun:
    env = job_env(tmp_path, f"octo-org/steps-{uuid.uuid4().hex[:8]}",
                  # No Docker, no backend: these tests are about the action itself.
                  DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    return ActionRun(job_env=env, inputs=inputs, work_dir=tmp_path)


def test_disable_says_so_once_and_does_nothing(tmp_path):
    run = _run(tmp_path, disable="true", **{"report-file": str(tmp_path / "report.json")})
    pre = run.step("pre")
    assert pre.returncode == 0
    assert pre.state == {"disabled": "true"}
    lines = [line for line in pre.stdout.splitlines() if "disabled" in line]
    assert lines == ["ImageTrail: disabled by the 'disable' input; this job's pushes are not collected."]
    main = run.step("main")
    post = run.step("post")
    assert (main.returncode, post.returncode) == (0, 0)
    assert main.stdout == post.stdout == ""  # said once, in pre
    assert post.outputs == {}
    assert not (tmp_path / "report.json").exists()


def test_disable_without_a_pre_step_is_said_by_post(tmp_path):
    run = _run(tmp_path, disable="TRUE")
    post = run.step("post")
    assert post.returncode == 0
    assert post.stdout.count("disabled by the 'disable' input") == 1
    assert post.outputs == {}


def test_main_records_that_it_ran(tmp_path):
    run = _run(tmp_path)
    main = run.step("main")
    assert main.returncode == 0
    assert main.state == {"main-ran": "true"}
    assert "reported in the post step" in main.stdout
    assert main.warnings == []


@pytest.mark.parametrize("name, value", [("disable", "yes"), ("dry-run", "maybe"), ("deadline-seconds", "soon"),
                                         ("deadline-seconds", "0"), ("deadline-seconds", "58")])
def test_a_bad_input_is_one_warning_naming_it(tmp_path, name, value):
    run = _run(tmp_path, **{"dry-run": "true", name: value})
    pre = run.step("pre", extra_env={"PATH": ""})  # no Python: the collector itself is out of the picture
    assert pre.returncode == 0
    about_input = [w for w in pre.warnings if f"input '{name}'" in w]
    assert len(about_input) == 1, pre.stdout
    assert repr(value) in about_input[0] or f"'{value}'" in about_input[0]
    post = run.step("post", extra_env={"PATH": ""})
    assert post.returncode == 0
    assert not [w for w in post.warnings if f"input '{name}'" in w], "post repeats what pre already said"


def test_state_reaches_post_the_way_the_runner_passes_it(tmp_path):
    run = _run(tmp_path)
    pre = run.step("pre", extra_env={"PATH": ""})
    assert pre.returncode == 0
    assert set(pre.state) == {"pre-started-at"}
    run.step("main")
    assert set(run.state) == {"pre-started-at", "main-ran"}
    post = run.step("post", extra_env={"PATH": ""})
    assert post.returncode == 0


def test_api_key_is_masked_before_anything_is_printed(tmp_path):
    key = "itk_" + uuid.uuid4().hex + uuid.uuid4().hex
    run = _run(tmp_path, **{"api-key": key, "backend-url": "http://127.0.0.1:9/", "deadline-seconds": "10"})
    for phase in ("pre", "main", "post"):
        step = run.step(phase)
        assert step.returncode == 0
        if phase != "main":
            assert step.stdout.splitlines()[0] == f"::add-mask::{key}"
            assert step.masks == [key]
        rest = step.stdout.replace(f"::add-mask::{key}", "") + step.stderr
        assert key not in rest
        for path in (step.state, step.outputs):
            assert key not in str(path)


def test_a_copy_of_the_action_without_the_collector_warns_once_and_succeeds(tmp_path):
    lonely = tmp_path / "checkout"
    shutil.copytree(ACTION_DIR, lonely / "github-action")  # no shim/, no src/ next to it
    run = ActionRun(job_env=job_env(tmp_path, "octo-org/lonely"), inputs={}, work_dir=tmp_path,
                    action_dir=lonely / "github-action")
    for phase in ("pre", "main", "post"):
        step = run.step(phase)
        assert step.returncode == 0, step.log
        if phase == "main":
            continue
        assert len(step.warnings) == 1, step.stdout
        assert "shim/collector-shim.js" in step.warnings[0] and "nothing was collected" in step.warnings[0]


class SilentDockerSocket:
    """A Unix socket that accepts connections and never answers: a hung Docker daemon."""

    def __init__(self, path):
        import socket
        import threading

        self.path = str(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.path)
        self._sock.listen(64)
        self._held = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
                self._held.append(conn)  # read nothing, answer nothing
            except OSError:
                continue

    def close(self):
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self._sock.close()


def test_a_hung_docker_daemon_cannot_hold_the_job(tmp_path):
    silent = SilentDockerSocket(tmp_path / "docker.sock")
    try:
        run = _run(tmp_path, **{"deadline-seconds": "6", "dry-run": "true"})
        run.job_env["DOCKER_HOST"] = f"unix://{silent.path}"
        steps = [run.step(phase, timeout=60) for phase in ("pre", "main", "post")]
    finally:
        silent.close()
    for step in steps:
        assert step.returncode == 0, step.log
    pre, _, post = steps
    # pre is capped at 20 s by the action, post at its deadline; each plus the shim's start-up and a grace margin.
    assert pre.seconds < 20 + 10, pre.log
    assert post.seconds < 6 + 10, post.log
    assert post.warnings, post.log  # the job is told its pushes may be missing


def test_an_old_report_file_does_not_become_this_jobs_outputs(tmp_path):
    stale = tmp_path / "report.json"
    stale.write_text('{"reportId": "sha256:' + "0" * 64 + '", "pushes": [{}]}', encoding="utf-8")
    os.utime(stale, (1_000_000_000, 1_000_000_000))  # written by an earlier job
    run = _run(tmp_path, **{"report-file": str(stale), "dry-run": "true"})
    post = run.step("post", extra_env={"PATH": ""})
    assert post.returncode == 0
    assert post.outputs == {}


def test_backend_settings_come_from_the_with_inputs_only(tmp_path):
    """An earlier step can add variables to the job's environment ($GITHUB_ENV): IMAGETRAIL_URL and the
    Entra settings from there must not decide where the job's token goes."""
    script = (
        "const { readSettings, collectorEnv } = require(process.argv[1]);"
        "const env = JSON.parse(process.argv[2]);"
        "const settings = readSettings(env, true);"
        "process.stdout.write(JSON.stringify(collectorEnv(env, settings)));"
    )
    env = {
        "GITHUB_ACTIONS": "true",
        "IMAGETRAIL_URL": "http://attacker.example",
        "IMAGETRAIL_AUDIENCE": "api://attacker",
        "IMAGETRAIL_ENTRA_AUTHORITY_HOST": "http://attacker.example",
        "imagetrail_entra_client_id": "x",
        "IMAGETRAIL_ENGINE_DIR": "/srv/engines",
        "RUNNER_TEMP": str(tmp_path),
    }
    lib = str(ACTION_DIR / "lib" / "run-phase.js")
    done = subprocess.run([shutil.which("node") or "node", "-e", script, lib, json.dumps(env)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    child = json.loads(done.stdout.splitlines()[-1])
    imagetrail = {name: value for name, value in child.items() if name.upper().startswith("IMAGETRAIL_")}
    assert "IMAGETRAIL_URL" not in imagetrail  # no backend-url input: the report is kept, not sent elsewhere
    assert imagetrail["IMAGETRAIL_AUDIENCE"] == "api://imagetrail"
    assert imagetrail["IMAGETRAIL_ENGINE_DIR"] == "/srv/engines"
    assert set(imagetrail) == {"IMAGETRAIL_AUDIENCE", "IMAGETRAIL_ENGINE_DIR", "IMAGETRAIL_REPORT_FILE"}

    with_input = {**env, "INPUT_BACKEND-URL": "https://imagetrail.example"}
    done = subprocess.run([shutil.which("node") or "node", "-e", script, lib, json.dumps(with_input)],
                          capture_output=True, text=True, timeout=30)
    assert json.loads(done.stdout.splitlines()[-1])["IMAGETRAIL_URL"] == "https://imagetrail.example"
