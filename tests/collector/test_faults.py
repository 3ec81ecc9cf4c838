"""Faults: each ends with exit 0, exactly one warning line, within the deadline, no secret shown.

The backend faults run against a quiet local engine (``QuietEngine``): this machine's real
engine is shared with concurrent jobs, and a push of theirs inside the test job's window once
entered the report (one more push, another request count) - these tests are about the backend.
The real engine is exercised in test_docker_collect.py, test_docker_tcp.py and test_shared_engine.py.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from imagetrail.collector.context.azure_devops import azure_devops_context
from imagetrail.collector.state import JobFiles, JobRecord, append_line, write_json_atomically
from tests.collector.support import (
    ACCESS_TOKEN,
    API_KEY,
    HttpStub,
    QuietEngine,
    azure_env,
    collect,
    json_reply,
    validate,
)

# Faults that end by the deadline use a short one (the tests wait for it), yet long enough for
# the interpreter's start, which counts, plus one attempt on a loaded machine; faults that do not
# (an answer such as HTTP 403) use the default, so that they never race the deadline.
DEADLINE = 8.0
BOUND = DEADLINE + 5.0  # correctness bound (the step ends), not a speed target
DIGEST = "sha256:" + "ab" * 32
IMAGE_ID = "sha256:" + "cd" * 32


def _assert_one_warning(run, *needles: str) -> str:
    assert run.returncode == 0, run.output
    warnings = run.warnings()
    assert len(warnings) == 1, run.output
    for needle in needles:
        assert needle in warnings[0], warnings[0]
    for secret in (ACCESS_TOKEN, API_KEY):
        assert secret not in run.output
    return warnings[0]


@pytest.fixture
def engine(tmp_path):
    with QuietEngine(tmp_path / "engine.sock") as quiet:
        yield quiet
    assert quiet.errors == []


def _job_with_a_push(tmp_path: Path, engine: QuietEngine, **extra: str) -> dict:
    """A job whose watcher already recorded one resolved push (the watcher's own file format)."""
    extra.setdefault("IMAGETRAIL_DEADLINE_SECONDS", str(DEADLINE))
    env = azure_env(tmp_path, IMAGETRAIL_API_KEY=API_KEY, DOCKER_HOST=engine.host, **extra)
    files = JobFiles.for_job(env, azure_devops_context(env))
    files.ensure_directory()
    start = time.time_ns() - 1_000_000_000
    write_json_atomically(files.job, JobRecord(start_ns=start).to_json())
    append_line(files.pushes, {"type": "watching", "since": start, "pid": 1})
    append_line(files.pushes, {"type": "push",
                               "event": {"reference": "127.0.0.1:5000/shop/app:1", "timeNano": start + 1,
                                         "name": "127.0.0.1:5000/shop/app", "labels": {}},
                               "resolution": {"digest": DIGEST, "imageId": IMAGE_ID, "labels": {}}})
    return env


def _kept_report(run, env) -> dict:
    line = [text for text in run.stdout.splitlines()
            if text.startswith("##vso[task.addattachment type=imagetrail.report;")]
    assert len(line) == 1, run.output
    path = line[0].split("]", 1)[1]
    assert path.startswith(env["AGENT_TEMPDIRECTORY"]) and os.path.basename(path).startswith("report-")
    body = json.loads(Path(path).read_text())
    validate(body)
    return body


def test_no_docker_at_all(tmp_path):
    env = azure_env(tmp_path, DOCKER_HOST=f"unix://{tmp_path}/missing.sock",
                    SYSTEM_PIPELINESTARTTIME="2026-01-01 00:00:00+00:00")
    pre = collect("pre-job", env)
    _assert_one_warning(pre, "missing.sock")
    post = collect("post-job", env)
    _assert_one_warning(post, "missing.sock")
    assert post.elapsed < BOUND


def test_default_socket_absent_is_not_a_warning(tmp_path):
    # An agent without Docker: the default endpoint is absent. Nothing to report, nothing to warn about.
    env = azure_env(tmp_path, DOCKER_CONFIG=str(tmp_path / "cfg"))
    (tmp_path / "cfg").mkdir()
    context_dir = tmp_path / "cfg"
    (context_dir / "config.json").write_text(json.dumps({"currentContext": "default"}))
    from imagetrail.collector.docker_endpoint import resolve_endpoint

    assert resolve_endpoint(env).source == "default"


def test_daemon_that_accepts_and_never_answers(tmp_path):
    path = str(tmp_path / "hang.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    held = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])  # keep it open, never answer
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()
    try:
        env = azure_env(tmp_path, DOCKER_HOST=f"unix://{path}", IMAGETRAIL_DEADLINE_SECONDS=str(DEADLINE),
                        SYSTEM_PIPELINESTARTTIME="2026-01-01 00:00:00+00:00")
        post = collect("post-job", env)
        _assert_one_warning(post, "did not answer in time")
        assert post.elapsed < BOUND
    finally:
        stop.set()
        server.close()
        for conn in held:
            conn.close()


def test_backend_down_keeps_the_report_with_the_run(tmp_path, engine):
    # The port stays bound (not listening) during the run: connections are refused, and no other
    # process can take the port, nor can the client's own ephemeral port be it (TCP self-connect).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        env = _job_with_a_push(tmp_path, engine, IMAGETRAIL_URL=f"http://127.0.0.1:{sock.getsockname()[1]}")
        run = collect("post-job", env)
    warning = _assert_one_warning(run, "could not be sent", "attached to the run as imagetrail.report")
    assert "cannot connect" in warning
    assert run.elapsed < BOUND
    body = _kept_report(run, env)
    assert [p["digest"] for p in body["pushes"]] == [DIGEST]
    assert any(r.startswith("/events?") for r in engine.requests)  # the ring buffer was read


def test_backend_that_accepts_and_never_answers(tmp_path, engine):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    try:
        env = _job_with_a_push(tmp_path, engine, IMAGETRAIL_URL=f"http://127.0.0.1:{server.getsockname()[1]}")
        run = collect("post-job", env)
        _assert_one_warning(run, "could not be sent", "no answer within the timeout")
        assert run.elapsed < BOUND
        _kept_report(run, env)
    finally:
        server.close()


def test_4xx_is_not_retried_and_the_server_message_is_shown_masked(tmp_path, engine):
    def reject(seen):
        # A hostile or careless backend echoes the credential back: it must not reach the log.
        detail = f"token {seen.headers['authorization']} may not write project Shop\n##vso[x]"
        return json_reply(403, {"detail": detail})

    with HttpStub(reject) as stub:
        env = _job_with_a_push(tmp_path, engine, IMAGETRAIL_URL=stub.url, IMAGETRAIL_DEADLINE_SECONDS="20")
        run = collect("post-job", env)
    warning = _assert_one_warning(run, "HTTP 403", "may not write project Shop")
    assert "##vso[x]" not in warning
    assert len(stub.requests) == 1
    _kept_report(run, env)


def test_5xx_and_429_are_retried_then_delivered(tmp_path, engine):
    answers = [json_reply(503, {"detail": "database unavailable"}),
               json_reply(429, {"detail": "slow down"}, {"Retry-After": "1"}),
               json_reply(201, {"status": "created", "reportId": "x", "pushes": 1})]

    with HttpStub(lambda seen: answers.pop(0)) as stub:
        # The default deadline: this is about retrying, and three attempts plus a one-second
        # Retry-After need more than the short deadline of the deadline faults on a loaded machine.
        env = _job_with_a_push(tmp_path, engine, IMAGETRAIL_URL=stub.url + "/",
                               IMAGETRAIL_DEADLINE_SECONDS="20")
        run = collect("post-job", env)
    assert run.returncode == 0 and run.warnings() == [], run.output
    assert "reported 1 pushed image reference" in run.stdout
    assert len(stub.requests) == 3
    assert run.elapsed >= 1.0  # Retry-After was honoured
    first = stub.requests[0]
    assert (first.method, first.path) == ("POST", "/v1/reports")
    assert first.headers["authorization"] == f"Bearer {API_KEY}"
    assert first.headers["content-type"] == "application/json"
    body = json.loads(first.body)
    validate(body)
    assert body["pushes"][0]["digest"] == DIGEST and body["context"]["run"]["id"] == env["BUILD_BUILDID"]
    assert stub.requests[2].body == first.body  # the same report, the same id
    assert ACCESS_TOKEN not in run.output and API_KEY not in run.output


def test_retry_after_beyond_the_deadline_gives_up_at_once(tmp_path, engine):
    with HttpStub(lambda seen: json_reply(429, {"detail": "busy"}, {"Retry-After": "3600"})) as stub:
        # The default deadline (20 s): ending well before it shows the step did not wait.
        env = _job_with_a_push(tmp_path, engine, IMAGETRAIL_URL=stub.url, IMAGETRAIL_DEADLINE_SECONDS="20")
        run = collect("post-job", env)
    _assert_one_warning(run, "retry after 3600 s")
    assert len(stub.requests) == 1 and run.elapsed < BOUND


def test_garbage_answer_is_one_warning(tmp_path, engine):
    with HttpStub(lambda seen: (200, {"Content-Type": "application/json"}, b"{not json")) as stub:
        env = _job_with_a_push(tmp_path, engine, IMAGETRAIL_URL=stub.url, IMAGETRAIL_DEADLINE_SECONDS="20")
        run = collect("post-job", env)
    _assert_one_warning(run, "without a JSON object")
    _kept_report(run, env)


def test_no_url_keeps_the_report(tmp_path, engine):
    env = _job_with_a_push(tmp_path, engine, IMAGETRAIL_DEADLINE_SECONDS="20")
    run = collect("post-job", env)
    _assert_one_warning(run, "IMAGETRAIL_URL is not set")
    _kept_report(run, env)


@pytest.mark.parametrize("variable, value, needle", [
    ("IMAGETRAIL_DEADLINE_SECONDS", "soon", "IMAGETRAIL_DEADLINE_SECONDS is not a number"),
    ("IMAGETRAIL_DEADLINE_SECONDS", "-3", "between 1 and"),
    ("IMAGETRAIL_BREAKER_SECONDS", "five minutes", "IMAGETRAIL_BREAKER_SECONDS is not a number"),
    ("IMAGETRAIL_PROBE_SECONDS", "0", "IMAGETRAIL_PROBE_SECONDS must be between 1 and 3600"),
])
def test_malformed_settings(tmp_path, variable, value, needle):
    env = azure_env(tmp_path, IMAGETRAIL_DRY_RUN="true", SYSTEM_JOBATTEMPT="two",
                    BUILD_BUILDID="\n##vso[evil]",
                    DOCKER_HOST=f"unix://{tmp_path}/none.sock", **{variable: value})
    env["DOCKER_HOST"] = ""
    env["SYSTEM_PIPELINESTARTTIME"] = "not a time"
    run = collect("post-job", env)
    assert run.returncode == 0
    assert any(needle in w for w in run.warnings()), run.output
    assert "##vso[evil]" not in run.output


def test_damaged_job_record(tmp_path):
    env = azure_env(tmp_path)
    files = JobFiles.for_job(env, azure_devops_context(env))
    files.ensure_directory()
    Path(files.job).write_text("{garbage")
    run = collect("post-job", env)
    _assert_one_warning(run, "is damaged")


def test_disabled_does_nothing(tmp_path):
    env = azure_env(tmp_path, IMAGETRAIL_DISABLE="true")
    for phase in ("pre-job", "post-job"):
        run = collect(phase, env)
        assert run.returncode == 0 and run.warnings() == [] and "disabled" in run.stdout
    assert not (Path(env["AGENT_TEMPDIRECTORY"]) / "imagetrail").exists()


def test_bad_arguments_still_exit_zero(tmp_path):
    run = collect("sideways", azure_env(tmp_path))
    _assert_one_warning(run, "bad arguments")


def test_github_warning_syntax(tmp_path):
    env = azure_env(tmp_path, DOCKER_HOST=f"unix://{tmp_path}/missing.sock")
    del env["TF_BUILD"]
    env.update({"GITHUB_ACTIONS": "true", "RUNNER_TEMP": env["AGENT_TEMPDIRECTORY"],
                "GITHUB_REPOSITORY": "octo/shop",
                "GITHUB_RUN_ID": "9", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": ACCESS_TOKEN + "-gh"})
    run = collect("pre-job", env)
    warning = _assert_one_warning(run, "missing.sock")
    assert warning.startswith("::warning::ImageTrail: ")


def test_deadline_while_the_report_is_kept_is_still_one_warning(tmp_path, engine):
    # On GitHub the kept report also goes to the job summary; here the summary is a FIFO nobody
    # reads, so keeping blocks: first in the step's last lines, then in the watchdog. The step
    # still ends, with one warning, and the report file written before the block is there.
    summary = tmp_path / "summary.md"
    os.mkfifo(summary)
    env = azure_env(tmp_path, DOCKER_HOST=engine.host, IMAGETRAIL_DEADLINE_SECONDS=str(DEADLINE))
    del env["TF_BUILD"]
    env.update({"GITHUB_ACTIONS": "true", "RUNNER_TEMP": env.pop("AGENT_TEMPDIRECTORY"),
                "GITHUB_REPOSITORY": "octo/shop", "GITHUB_RUN_ID": "9", "GITHUB_STEP_SUMMARY": str(summary)})
    from imagetrail.collector.context import pipeline_context

    files = JobFiles.for_job(env, pipeline_context(env))
    files.ensure_directory()
    start = time.time_ns() - 1_000_000_000
    write_json_atomically(files.job, JobRecord(start_ns=start).to_json())
    append_line(files.pushes, {"type": "push", "event": {"reference": "127.0.0.1:5000/shop/app:1",
                                                         "timeNano": start + 1},
                               "resolution": {"digest": DIGEST, "imageId": IMAGE_ID}})
    run = collect("post-job", env)
    warning = _assert_one_warning(run, f"stopped after the {DEADLINE:g} s deadline", "did not finish in time")
    assert warning.startswith("::warning::")
    assert run.elapsed < BOUND
    [kept] = (Path(env["RUNNER_TEMP"]) / "imagetrail").glob("report-*.json")
    body = json.loads(kept.read_text())
    validate(body)
    assert [p["digest"] for p in body["pushes"]] == [DIGEST]


# --- outages: short budgets, and the agent host's breaker ---------------------------------------

OUTAGE_FIRST_BOUND = 16.0  # the first job in an outage: delivery budget (8 s) + interpreter + keeping
OUTAGE_NEXT_BOUND = 6.0  # later jobs keep their report at once (the goal, < 3 s, is measured by the benchmark)


class HangingBackend:
    """Accepts connections, reads nothing, never answers; counts the connections."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.server.settimeout(0.2)
        self.connections = []
        self._stop = threading.Event()
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"

    def __enter__(self) -> "HangingBackend":
        def accept() -> None:
            while not self._stop.is_set():
                try:
                    self.connections.append(self.server.accept()[0])
                except OSError:
                    pass

        threading.Thread(target=accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.server.close()
        for conn in self.connections:
            conn.close()


def _host_job(tmp_path: Path, engine: QuietEngine, index: int, tools: Path, **extra: str) -> dict:
    """Job ``index`` on one agent host: its own temp directory, the host's tools directory."""
    extra.setdefault("IMAGETRAIL_DEADLINE_SECONDS", "50")  # the decorator's default: delivery must not use it up
    return _job_with_a_push(tmp_path / f"job{index}", engine, AGENT_TOOLSDIRECTORY=str(tools), **extra)


def _breaker_files(tools: Path) -> list:
    return sorted((tools / "imagetrail-state").glob("breaker-*.json"))


def test_hung_backend_costs_the_first_job_seconds_and_the_next_none(tmp_path, engine):
    tools = tmp_path / "tools"
    tools.mkdir()
    with HangingBackend() as backend:
        first = collect("post-job", _host_job(tmp_path, engine, 1, tools, IMAGETRAIL_URL=backend.url))
        _assert_one_warning(first, "could not be sent", "no answer within the timeout",
                            "jobs on this agent keep their reports")
        assert first.elapsed < OUTAGE_FIRST_BOUND, first.elapsed
        tried = len(backend.connections)
        assert 1 <= tried <= 3
        env = _host_job(tmp_path, engine, 2, tools, IMAGETRAIL_URL=backend.url)
        second = collect("post-job", env)
        warning = _assert_one_warning(second, "has not been answering since", "no answer in time",
                                      "attached to the run as imagetrail.report")
        assert second.elapsed < OUTAGE_NEXT_BOUND, second.elapsed
        # Within the probe interval (30 s by default) the second job does not even probe.
        assert len(backend.connections) == tried, warning
    _kept_report(second, env)
    [state] = _breaker_files(tools)
    text = state.read_text()
    assert API_KEY not in text and "127.0.0.1" not in text  # neither a secret nor the URL
    assert json.loads(text)["kept"] == 2


def test_backend_answering_500_opens_the_breaker(tmp_path, engine):
    tools = tmp_path / "tools"
    tools.mkdir()
    with HttpStub(lambda seen: json_reply(500, {"detail": "boom"})) as stub:
        first = collect("post-job", _host_job(tmp_path, engine, 1, tools, IMAGETRAIL_URL=stub.url))
        _assert_one_warning(first, "HTTP 500", "attached to the run")
        assert len(stub.requests) == 3  # MAX_ATTEMPTS, quickly
        assert first.elapsed < OUTAGE_FIRST_BOUND
        second = collect("post-job", _host_job(tmp_path, engine, 2, tools, IMAGETRAIL_URL=stub.url))
        _assert_one_warning(second, "has not been answering since", "HTTP 500")
        assert len(stub.requests) == 3 and second.elapsed < OUTAGE_NEXT_BOUND


def test_backend_that_comes_back_is_probed_once_and_delivered_to(tmp_path, engine):
    tools = tmp_path / "tools"
    tools.mkdir()
    up = threading.Event()

    def backend(seen):
        if not up.is_set():
            return json_reply(503, {"detail": "down"})
        if seen.method == "GET" and seen.path == "/healthz":
            return json_reply(200, {"status": "ok"})
        return json_reply(201, {"status": "created", "reportId": "x", "pushes": 1})

    with HttpStub(backend) as stub:
        settings = {"IMAGETRAIL_URL": stub.url, "IMAGETRAIL_PROBE_SECONDS": "1"}
        collect("post-job", _host_job(tmp_path, engine, 1, tools, **settings))
        assert len(_breaker_files(tools)) == 1
        up.set()
        time.sleep(1.1)  # a new probe interval
        before = len(stub.requests)
        back = collect("post-job", _host_job(tmp_path, engine, 2, tools, **settings))
        assert back.returncode == 0 and back.warnings() == [], back.output
        assert "reported 1 pushed image reference" in back.stdout
        assert [(r.method, r.path) for r in stub.requests[before:]] == [("GET", "/healthz"), ("POST", "/v1/reports")]
        assert _breaker_files(tools) == []  # closed: the next job delivers without probing
        after = collect("post-job", _host_job(tmp_path, engine, 3, tools, **settings))
        assert after.warnings() == [] and stub.requests[-1].path == "/v1/reports"
        assert [r.path for r in stub.requests].count("/healthz") == 1


def test_one_probe_per_interval_among_concurrent_jobs(tmp_path, engine):
    tools = tmp_path / "tools"
    tools.mkdir()
    with HttpStub(lambda seen: json_reply(503, {"detail": "down"})) as stub:
        settings = {"IMAGETRAIL_URL": stub.url, "IMAGETRAIL_PROBE_SECONDS": "120"}
        collect("post-job", _host_job(tmp_path, engine, 0, tools, **settings))
        # As if the failure were one probe interval old: the next job may probe.
        [state] = _breaker_files(tools)
        data = json.loads(state.read_text())
        data.update(openedAt=data["openedAt"] - 121, failedAt=data["failedAt"] - 121)
        state.write_text(json.dumps(data))
        envs = [_host_job(tmp_path, engine, i, tools, **settings) for i in range(1, 5)]
        before = len(stub.requests)
        results = []
        threads = [threading.Thread(target=lambda e=e: results.append(collect("post-job", e))) for e in envs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(results) == 4
    for run in results:
        _assert_one_warning(run, "has not been answering since")
    assert [(r.method, r.path) for r in stub.requests[before:]] == [("GET", "/healthz")]


@pytest.mark.parametrize("content", ["{torn", json.dumps({"v": 1, "openedAt": 0, "failedAt": 0, "until": 1e12, "kept": 1}),
                                     json.dumps({"v": 1, "openedAt": "x", "until": "y"}), ""])
def test_damaged_breaker_state_reads_as_closed(tmp_path, engine, content):
    tools = tmp_path / "tools"
    tools.mkdir()
    with HttpStub(lambda seen: json_reply(201, {"status": "created", "reportId": "x", "pushes": 1})) as stub:
        env = _host_job(tmp_path, engine, 1, tools, IMAGETRAIL_URL=stub.url)
        from imagetrail.collector.breaker import Breaker

        breaker = Breaker.for_backend(env, stub.url, 300, 30)
        os.makedirs(breaker.directory, exist_ok=True)
        Path(breaker.path).write_text(content)
        run = collect("post-job", env)
    assert run.warnings() == [] and [r.path for r in stub.requests] == ["/v1/reports"], run.output


def test_breaker_state_directory(tmp_path):
    from imagetrail.collector.breaker import state_directory

    tools = tmp_path / "_work" / "_tool"
    tools.mkdir(parents=True)
    assert state_directory({"IMAGETRAIL_STATE_DIR": "/srv/it", "AGENT_TOOLSDIRECTORY": str(tools)}) == "/srv/it"
    assert state_directory({"AGENT_TOOLSDIRECTORY": str(tools)}) == str(tools / "imagetrail-state")
    assert state_directory({"RUNNER_TOOL_CACHE": str(tools)}) == str(tools / "imagetrail-state")
    # Not the per-job temp directory, which the agent empties after every job.
    assert state_directory({"AGENT_TEMPDIRECTORY": str(tmp_path), "HOME": "/home/agent"}) == \
        "/home/agent/.cache/imagetrail"
    assert state_directory({"AGENT_TOOLSDIRECTORY": str(tmp_path / "absent"), "XDG_CACHE_HOME": "/c"}) == \
        "/c/imagetrail"


def test_breaker_off_tries_every_job(tmp_path, engine):
    tools = tmp_path / "tools"
    tools.mkdir()
    with HttpStub(lambda seen: json_reply(500, {"detail": "boom"})) as stub:
        for index in (1, 2):
            run = collect("post-job", _host_job(tmp_path, engine, index, tools, IMAGETRAIL_URL=stub.url,
                                                IMAGETRAIL_BREAKER_SECONDS="0"))
            _assert_one_warning(run, "HTTP 500")
    assert len(stub.requests) == 6 and _breaker_files(tools) == []
