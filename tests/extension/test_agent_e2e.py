"""End to end, as an Azure Pipelines agent runs the injected steps: build the .vsix with the real
tfx-cli, unzip it, run the pre-job decorator's step (`node tasks/ImageTrailCollector/index.js` with the
environment the agent sets, INPUT_IMAGETRAILPHASE=pre-job), build and push images to the real registry with
the real Docker engine amid noise, run the post-job decorator's step (the same task, post-job), and check
the exact report, in the report file and as delivered to a local backend stub that also plays Azure
DevOps' OIDC token endpoint."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.extension.support import (
    TASK_NAME,
    built_vsix,
    decorator_steps,
    load_json,
    minimal_path_dir,
    node,
    old_interpreter,
    old_python_stand_in,
    unzip,
)
from tests.support import services
from tests.support.live_server import free_port
from tests.support.podman import podman_env

pytestmark = pytest.mark.e2e

ACCESS_TOKEN = "azdo-access-" + secrets.token_hex(16)
OIDC_TOKEN = "eyJhbGciOiJSUzI1NiJ9." + secrets.token_hex(24) + ".sig"
AUDIENCE = "api://imagetrail-e2e"
COMMIT = "3f5a1c0e9b2d4c6a8e0f1a2b3c4d5e6f7a8b9c0d"
WARNING = "##vso[task.logissue type=warning]ImageTrail: "


class Backend:
    """ImageTrail's POST /v1/reports and GET /healthz, and Azure DevOps' "Oidctoken - Create", checked
    request by request. ``mode`` plays an outage: "hang" (reads the report, never answers), "500", "up"."""

    def __init__(self) -> None:
        self.mode = "up"
        self.report_attempts = 0
        self.health_checks = 0
        self.reports: List[Tuple[Dict[str, str], Dict]] = []
        self.oidc_requests: List[Dict[str, str]] = []
        self.errors: List[str] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _reply(self, status: int, body: Dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if urlsplit(self.path).path != "/healthz":
                    backend.errors.append(f"unexpected GET {self.path}")
                    return self._reply(404, {"detail": "not found"})
                backend.health_checks += 1
                self._reply(200 if backend.mode == "up" else 503, {"status": backend.mode})

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if url.path.endswith("/oidctoken"):
                    backend.oidc_requests.append(dict(self.headers))
                    if parse_qs(url.query).get("api-version") != ["7.1"]:
                        backend.errors.append(f"OIDC request without api-version=7.1: {self.path}")
                        return self._reply(400, {"message": "api-version"})
                    if self.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
                        backend.errors.append("OIDC request without the job's System.AccessToken")
                        return self._reply(401, {"message": "unauthorized"})
                    return self._reply(200, {"oidcToken": OIDC_TOKEN})
                if url.path == "/v1/reports":
                    backend.report_attempts += 1
                    if backend.mode == "hang":
                        time.sleep(120)  # the collector gives up long before
                        return
                    if backend.mode == "500":
                        return self._reply(500, {"detail": "internal error"})
                    if self.headers.get("Authorization") != f"Bearer {OIDC_TOKEN}":
                        backend.errors.append("report sent without the job's OIDC token")
                        return self._reply(401, {"detail": "unauthorized"})
                    if not (self.headers.get("Content-Type") or "").startswith("application/json"):
                        backend.errors.append("report is not JSON")
                    report = json.loads(body)
                    backend.reports.append((dict(self.headers), report))
                    return self._reply(201, {"reportId": report.get("reportId"), "status": "created"})
                backend.errors.append(f"unexpected POST {self.path}")
                self._reply(404, {"detail": "not found"})

        # Port 0: the kernel picks a free port at bind, with no window in which another socket can take it.
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.server.daemon_threads = True  # a hanging request must not hold up close()
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def backend():
    server = Backend()
    yield server
    server.close()


def _extension_for(tmp_path_factory, backend: "Backend") -> Path:
    """The built .vsix, unzipped; the backend URL and audience baked in as an organisation does."""
    out = tmp_path_factory.mktemp("dist")
    vsix = built_vsix(out, "--backend-url", backend.url, "--audience", AUDIENCE, "--publisher", "contoso-e2e")
    return unzip(vsix, tmp_path_factory.mktemp("vsix"))


@pytest.fixture(scope="module")
def extension(tmp_path_factory, backend) -> Path:
    return _extension_for(tmp_path_factory, backend)


def task_folder(tasks_root: Path, reference: str) -> Path:
    """The folder the agent runs for `task: <guid>@<major>`: the one whose task.json has that id and major."""
    guid, major = reference.split("@")
    found = []
    for manifest in tasks_root.glob("**/task.json"):
        task = load_json(manifest)
        if task["id"].lower() == guid.lower() and task["version"]["Major"] == int(major):
            found.append(manifest.parent)
    assert len(found) == 1, (reference, found)
    return found[0]


def agent_step(
    extension: Path, phase: str, tasks_root: Optional[Path] = None
) -> Tuple[List[str], Dict[str, str]]:
    """The command and the step-specific environment the agent derives from the injected step:
    the task folder its GUID names, the Node handler's target, INPUT_<NAME> per input (task.json
    defaults, then the step's inputs), and the step's env mapping with macros expanded."""
    template = extension / "decorators" / f"{phase}.yml"
    [step] = decorator_steps(template.read_text(encoding="utf-8"))
    folder = task_folder(tasks_root or extension / "tasks", step["task"])
    task = load_json(folder / "task.json")
    assert task["name"] == TASK_NAME  # both phases run the one task; the step's input names the phase
    inputs = {item["name"]: item.get("defaultValue", "") for item in task["inputs"]}
    inputs.update(step["inputs"])
    env = {"INPUT_" + name.replace(" ", "_").upper(): str(value) for name, value in inputs.items()}
    macros = {"System.AccessToken": ACCESS_TOKEN}
    for name, value in step["env"].items():
        env[name] = re.sub(r"\$\(([^)]+)\)", lambda m: macros[m.group(1)], value)
    command = [node(), str(folder / task["execution"]["Node20_1"]["target"])]
    return command, env


def job_environment(tmp_path: Path, backend: Backend) -> Dict[str, str]:
    """Predefined variables as the agent exports them (System.JobId -> SYSTEM_JOBID ...)."""
    temp = tmp_path / "agent" / "_temp"
    temp.mkdir(parents=True)
    tools = tmp_path / "agent" / "_tool"
    tools.mkdir(exist_ok=True)
    project_id, plan_id, job_id = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "LANG": "C.UTF-8",
        "TF_BUILD": "True",
        "AGENT_TEMPDIRECTORY": str(temp),
        "AGENT_TOOLSDIRECTORY": str(tools),
        "AGENT_NAME": "Azure Pipelines 3",
        "AGENT_OS": "Linux",
        "AGENT_JOBSTATUS": "Succeeded",
        "SYSTEM_HOSTTYPE": "build",
        "SYSTEM_COLLECTIONURI": "https://dev.azure.com/contoso/",
        "SYSTEM_TEAMFOUNDATIONCOLLECTIONURI": "https://dev.azure.com/contoso/",
        "SYSTEM_COLLECTIONID": "c0ffee00-1111-2222-3333-444455556666",
        "SYSTEM_TEAMPROJECT": "Shop",
        "SYSTEM_TEAMPROJECTID": project_id,
        "SYSTEM_DEFINITIONID": "42",
        "BUILD_DEFINITIONNAME": "shop-ci",
        "BUILD_BUILDID": "1234",
        "BUILD_BUILDNUMBER": "20261129.3",
        "BUILD_REASON": "IndividualCI",
        "SYSTEM_JOBID": job_id,
        "SYSTEM_JOBDISPLAYNAME": "Build image",
        "SYSTEM_JOBATTEMPT": "1",
        "SYSTEM_STAGEDISPLAYNAME": "Build",
        "SYSTEM_PLANID": plan_id,
        "BUILD_REPOSITORY_ID": "9a8b7c6d-0000-4000-8000-123456789abc",
        "BUILD_REPOSITORY_NAME": "shop",
        "BUILD_REPOSITORY_URI": "https://dev.azure.com/contoso/Shop/_git/shop",
        "BUILD_REPOSITORY_PROVIDER": "TfsGit",
        "BUILD_SOURCEBRANCH": "refs/heads/main",
        "BUILD_SOURCEVERSION": COMMIT,
        "BUILD_REQUESTEDFOR": "Ada Lovelace",
        "BUILD_REQUESTEDFOREMAIL": "ada@contoso.example",
        "BUILD_REQUESTEDFORID": "5e1f0000-aaaa-4bbb-8ccc-ddddeeeeffff",
        "SYSTEM_OIDCREQUESTURI": (
            f"{backend.url}/contoso/{project_id}/_apis/distributedtask/hubs/build/plans/"
            f"{plan_id}/jobs/{job_id}/oidctoken"
        ),
        "IMAGETRAIL_REPORT_FILE": str(tmp_path / "report.json"),
        **podman_env(tmp_path / "podman"),  # this job's own podman event log, not the machine's
    }
    for name in ("DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def run_step(
    extension: Path,
    phase: str,
    job_env: Dict[str, str],
    timeout: float = 120,
    tasks_root: Optional[Path] = None,
    **extra: str,
):
    command, step_env = agent_step(extension, phase, tasks_root)
    env = {**job_env, **step_env, **extra}
    started = time.monotonic()
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout, cwd=job_env["AGENT_TEMPDIRECTORY"]
    )
    return result, time.monotonic() - started


def stop_watcher(pid: int) -> None:
    """The agent ends the job: the watcher the pre-job step left running goes too."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def warnings_in(output: str) -> List[str]:
    return [line for line in output.splitlines() if "##vso[task.logissue" in line]


def listeners() -> str:
    """Who listens on TCP here (for a failure message: a CI run once had the job's OIDC request answered by
    the Docker Engine instead of the test's stand-in, and this names the process that held the port)."""
    try:
        return subprocess.run(["ss", "-ltnp"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"(ss -ltnp: {exc})"


def docker(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr}")
    return result


def registry_digest(registry: str, repository: str, tag: str) -> str:
    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json, "
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Docker-Content-Digest"]


def make_noise(image: str, count: int) -> None:
    """More than the daemon's 256 buffered events: tag and untag through the Engine API."""
    import docker as docker_sdk

    client = docker_sdk.from_env(timeout=60)
    try:
        for index in range(count):
            client.api.tag(image, "imagetrail-e2e-noise", f"n{index}")
            client.api.remove_image(f"imagetrail-e2e-noise:n{index}")
    finally:
        client.close()


def test_pre_job_push_post_job_reports_exactly_what_was_pushed(
    extension, backend, docker_engine, registry, tmp_path
):
    job_env = job_environment(tmp_path, backend)
    namespace = f"e2e-{uuid.uuid4().hex[:10]}"

    pre, pre_seconds = run_step(extension, "pre-job", job_env)
    assert pre.returncode == 0, pre.stdout + pre.stderr
    assert warnings_in(pre.stdout) == [], pre.stdout
    # The watcher the collector left running must not hold the step open.
    assert pre_seconds < 15, pre_seconds
    [record_file] = (Path(job_env["AGENT_TEMPDIRECTORY"]) / "imagetrail").glob("job-*[0-9a-f].json")
    watcher_pid = load_json(record_file)["watcherPid"]
    assert watcher_pid and Path(f"/proc/{watcher_pid}").exists()

    try:
        context = tmp_path / "build"
        context.mkdir()
        (context / "hello.txt").write_text(namespace, encoding="utf-8")
        (context / "Dockerfile").write_text(
            "FROM scratch\nCOPY hello.txt /\nLABEL org.opencontainers.image.revision=" + COMMIT + "\n",
            encoding="utf-8",
        )
        app = f"{registry}/{namespace}/app"
        worker = f"{registry}/{namespace}/worker"
        docker("build", "-q", "-t", f"{app}:1.0", "-t", f"{app}:latest", str(context))
        (context / "hello.txt").write_text(namespace + " worker", encoding="utf-8")
        docker("build", "-q", "-t", f"{worker}:7", str(context))
        docker("push", f"{app}:1.0")
        make_noise(f"{app}:1.0", 150)  # 300 events between the pushes
        docker("push", f"{app}:latest")
        docker("push", f"{worker}:7")
        docker("pull", f"{app}:1.0")  # a pull is not a push
        failed = docker("push", f"127.0.0.1:{free_port()}/{namespace}/nowhere:1", check=False, timeout=120)
        assert failed.returncode != 0

        post, post_seconds = run_step(extension, "post-job", job_env)
    finally:
        try:
            os.kill(watcher_pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    assert post.returncode == 0, post.stdout + post.stderr
    assert warnings_in(post.stdout) == [], post.stdout
    assert ACCESS_TOKEN not in post.stdout + post.stderr + pre.stdout + pre.stderr
    assert OIDC_TOKEN not in post.stdout + post.stderr
    assert post_seconds < 60
    assert backend.errors == []

    expected_pushes = {
        (
            f"{app}:1.0",
            registry,
            f"{namespace}/app",
            "1.0",
            registry_digest(registry, f"{namespace}/app", "1.0"),
        ),
        (
            f"{app}:latest",
            registry,
            f"{namespace}/app",
            "latest",
            registry_digest(registry, f"{namespace}/app", "latest"),
        ),
        (
            f"{worker}:7",
            registry,
            f"{namespace}/worker",
            "7",
            registry_digest(registry, f"{namespace}/worker", "7"),
        ),
    }
    report = load_json(Path(job_env["IMAGETRAIL_REPORT_FILE"]))
    pushes = {
        (p["reference"], p["registry"], p["repository"], p["tag"], p["digest"]) for p in report["pushes"]
    }
    assert pushes == expected_pushes
    # Labels are best effort in the collector (not every discovery path reads them); when present, exact.
    labelled = [p for p in report["pushes"] if p["labels"]]
    assert all(p["labels"].get("org.opencontainers.image.revision") == COMMIT for p in labelled), report

    ctx = report["context"]
    assert ctx["system"] == "azure-devops"
    assert ctx["organization"] == {"id": job_env["SYSTEM_COLLECTIONID"], "name": "contoso"}
    assert ctx["project"] == {"id": job_env["SYSTEM_TEAMPROJECTID"], "name": "Shop"}
    assert ctx["pipeline"] == {"id": "42", "name": "shop-ci"}
    assert ctx["run"]["id"] == "1234" and ctx["run"]["number"] == "20261129.3"
    assert (
        ctx["run"]["url"]
        == f"https://dev.azure.com/contoso/{job_env['SYSTEM_TEAMPROJECTID']}/_build/results?buildId=1234"
    )
    assert ctx["job"] == {
        "id": job_env["SYSTEM_JOBID"],
        "name": "Build image",
        "attempt": 1,
        "stage": "Build",
    }
    assert ctx["repository"]["commit"] == COMMIT and ctx["repository"]["branch"] == "refs/heads/main"
    assert ctx["requester"] == {
        "id": job_env["BUILD_REQUESTEDFORID"],
        "name": "Ada Lovelace",
        "email": "ada@contoso.example",
    }

    # Delivered once, to the URL baked in at package time, with the job's OIDC token.
    assert len(backend.oidc_requests) >= 1
    delivered = [body for _, body in backend.reports if body.get("reportId") == report["reportId"]]
    assert delivered == [report]


def pre_push_post(extension: Path, job_env: Dict[str, str], tmp_path: Path, tag: str, **extra: str):
    """The pre-job step, one real push, the post-job step (with `extra` in both steps' environment)."""
    pre, _ = run_step(extension, "pre-job", job_env, **extra)
    [record_file] = (Path(job_env["AGENT_TEMPDIRECTORY"]) / "imagetrail").glob("job-*[0-9a-f].json")
    watcher_pid = load_json(record_file)["watcherPid"]
    try:
        context = tmp_path / f"ctx-{tag}"
        context.mkdir()
        (context / "Dockerfile").write_text(f"FROM scratch\nLABEL e2e={uuid.uuid4().hex}\n", encoding="utf-8")
        image = f"{services.REGISTRY}/e2e-{uuid.uuid4().hex[:10]}/{tag}:1"
        docker("build", "-q", "-t", image, str(context))
        docker("push", image)
        post, _ = run_step(extension, "post-job", job_env, **extra)
    finally:
        try:
            os.kill(watcher_pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    return pre, post, image


SETVARIABLE = re.compile(r"^##vso\[task\.setvariable variable=([^;\]]+)(;[^\]]*)?\](.*)$")


def variables_set_by(script: str) -> Dict[str, str]:
    """Runs a script step and does what the agent does with its `##vso[task.setvariable variable=NAME]VALUE`
    lines: later steps get NAME upper-cased with '.' as '_' in their environment (a secret variable,
    `issecret=true`, is not exported)."""
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30, check=True)
    exported = {}
    for line in done.stdout.splitlines():
        match = SETVARIABLE.match(line)
        if match and "issecret=true" not in (match.group(2) or ""):
            exported[match.group(1).upper().replace(".", "_")] = match.group(3)
    return exported


def test_pipeline_variables_cannot_redirect_the_job_token(
    extension, backend, docker_engine, registry, tmp_path
):
    """An earlier script step sets `imagetrail.url` to an attacker's server with a logging command (and the
    audience, the Entra authority and a variable named like the old task input); the agent exports them to
    the later steps' environment. The job's tokens still go only to the backend baked into the extension."""
    attacker = Backend()
    job_env = job_environment(tmp_path, backend)
    before = len(backend.reports)
    hostile = variables_set_by(
        f'echo "##vso[task.setvariable variable=imagetrail.url]{attacker.url}"\n'
        'echo "##vso[task.setvariable variable=imagetrail.audience]api://attacker"\n'
        f'echo "##vso[task.setvariable variable=IMAGETRAIL_ENTRA_AUTHORITY_HOST]{attacker.url}"\n'
        f'echo "##vso[task.setvariable variable=input.backendUrl]{attacker.url}"\n'
        f'echo "##vso[task.setvariable variable=INPUT_BACKENDURL]{attacker.url}"\n'
    )
    assert hostile["IMAGETRAIL_URL"] == hostile["INPUT_BACKENDURL"] == attacker.url
    try:
        pre, post, image = pre_push_post(extension, job_env, tmp_path, "redirect", **hostile)
    finally:
        attacker.close()
    assert pre.returncode == 0 and post.returncode == 0
    assert warnings_in(pre.stdout + post.stdout) == [], (
        f"{pre.stdout}{post.stdout}\nbackend {backend.url}, attacker {attacker.url}, backend saw "
        f"{len(backend.oidc_requests)} OIDC requests and errors {backend.errors}\n{listeners()}")
    assert attacker.reports == [] and attacker.oidc_requests == [] and attacker.errors == []
    delivered = [body for _, body in backend.reports[before:]]
    assert [push["reference"] for body in delivered for push in body["pushes"]] == [image]
    assert backend.errors == []
    assert attacker.url not in post.stdout


def test_hostile_python_variables_and_site_files_are_not_run(
    extension, backend, docker_engine, registry, tmp_path
):
    """PYTHONPATH with a sitecustomize, PYTHONUSERBASE with a .pth, PYTHONHOME pointing nowhere, and a venv
    first on PATH whose site-packages holds a .pth (all set by earlier steps of the job): the collector runs
    isolated, so none of that code runs beside SYSTEM_ACCESSTOKEN, and the report is still delivered."""
    ran = tmp_path / "hostile-code-ran"
    payload = f"import pathlib; pathlib.Path({str(ran)!r}).write_text('ran')\n"
    evil = tmp_path / "evil-path"
    evil.mkdir()
    for module in ("sitecustomize", "usercustomize", "json", "requests"):
        (evil / f"{module}.py").write_text(payload, encoding="utf-8")
    venv = tmp_path / "job-venv"  # first on PATH: the collector runs this interpreter
    subprocess.run(["python3", "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    [venv_site] = venv.glob("lib/python3*/site-packages")
    pth = "import os; " + payload.replace("\n", "; ") + "\n"
    (venv_site / "evil.pth").write_text(pth, encoding="utf-8")
    user_base = tmp_path / "user-base"
    user_site = user_base / "lib" / venv_site.parent.name / "site-packages"
    user_site.mkdir(parents=True)
    (user_site / "evil.pth").write_text(pth, encoding="utf-8")
    job_env = job_environment(tmp_path, backend)
    job_env["PATH"] = f"{venv / 'bin'}{os.pathsep}{job_env['PATH']}"
    for folder in (Path(job_env["AGENT_TEMPDIRECTORY"]), Path(job_env["AGENT_TEMPDIRECTORY"]) / "imagetrail"):
        folder.mkdir(exist_ok=True)  # the steps' and the watcher's working directories
        (folder / "json.py").write_text(payload, encoding="utf-8")
    before = len(backend.reports)
    pre, post, image = pre_push_post(
        extension, job_env, tmp_path, "isolated",
        PYTHONPATH=str(evil), PYTHONUSERBASE=str(user_base), PYTHONHOME=str(tmp_path / "no-such-home"),
        PYTHONSTARTUP=str(evil / "sitecustomize.py"), PYTHONINSPECT="1", VIRTUAL_ENV=str(venv),
    )
    assert pre.returncode == 0 and post.returncode == 0
    assert warnings_in(pre.stdout + post.stdout) == [], pre.stdout + post.stdout
    assert not ran.exists()
    delivered = [body for _, body in backend.reports[before:]]
    assert [push["reference"] for body in delivered for push in body["pushes"]] == [image]


def test_each_task_folder_runs_alone_as_the_agent_downloads_it(
    extension, backend, docker_engine, registry, tmp_path
):
    """The agent downloads only the task a step names, into _work/_tasks/<name>_<guid>/<version>/:
    both phases must run from that folder with no sibling folder to lean on."""
    tasks_root = tmp_path / "_work" / "_tasks"
    for name in [TASK_NAME]:
        task = load_json(extension / "tasks" / name / "task.json")
        version = "{Major}.{Minor}.{Patch}".format(**task["version"])
        shutil.copytree(extension / "tasks" / name, tasks_root / f"{name}_{task['id']}" / version)
    job_env = job_environment(tmp_path, backend)
    pre, _ = run_step(extension, "pre-job", job_env, tasks_root=tasks_root)
    [record_file] = (Path(job_env["AGENT_TEMPDIRECTORY"]) / "imagetrail").glob("job-*[0-9a-f].json")
    watcher_pid = load_json(record_file)["watcherPid"]
    try:
        (tmp_path / "ctx").mkdir()
        (tmp_path / "ctx" / "Dockerfile").write_text(
            f"FROM scratch\nLABEL e2e={uuid.uuid4().hex}\n", encoding="utf-8"
        )
        image = f"{registry}/e2e-{uuid.uuid4().hex[:10]}/alone:1"
        docker("build", "-q", "-t", image, str(tmp_path / "ctx"))
        docker("push", image)
        post, _ = run_step(extension, "post-job", job_env, tasks_root=tasks_root)
    finally:
        try:
            os.kill(watcher_pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    assert pre.returncode == 0 and post.returncode == 0
    assert warnings_in(pre.stdout + post.stdout) == [], pre.stdout + post.stdout
    report = load_json(Path(job_env["IMAGETRAIL_REPORT_FILE"]))
    assert [push["reference"] for push in report["pushes"]] == [image]


def test_opt_out_variable_is_silent(extension, backend, tmp_path):
    job_env = job_environment(tmp_path, backend)
    result, seconds = run_step(extension, "post-job", job_env, IMAGETRAIL_DISABLE="true")
    assert result.returncode == 0
    assert result.stdout == "" and result.stderr == ""
    assert not Path(job_env["IMAGETRAIL_REPORT_FILE"]).exists()
    assert seconds < 5


@pytest.mark.parametrize("phase_input", ["", "mid-job", "$(imagetrail.phase)"])
def test_a_step_without_a_known_phase_is_one_warning_and_collects_nothing(extension, backend, tmp_path, phase_input):
    """The task added by hand without its required phase (or with another one): one warning, no report."""
    job_env = job_environment(tmp_path, backend)
    before = backend.report_attempts
    result, seconds = run_step(extension, "post-job", job_env, INPUT_IMAGETRAILPHASE=phase_input)
    assert result.returncode == 0
    shown = "" if phase_input.startswith("$(") else phase_input  # an unexpanded macro means "not set"
    assert warnings_in(result.stdout) == [
        f"{WARNING}unknown phase '{shown}' (expected pre-job or post-job); nothing was collected"
    ], result.stdout
    assert not Path(job_env["IMAGETRAIL_REPORT_FILE"]).exists()
    assert backend.report_attempts == before
    assert seconds < 5


def system_python() -> Optional[str]:
    """The system interpreter the shim falls back to after PATH, if this machine has one >= 3.9."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            done = subprocess.run([candidate, "-c", "import sys; print(sys.version_info >= (3, 9))"],
                                  capture_output=True, text=True)
            if done.stdout.strip() == "True":
                return candidate
    return None


def test_no_python_on_path_falls_back_to_the_system_python(extension, backend, tmp_path):
    if system_python() is None:
        reason = "no Python >= 3.9 at /usr/bin/python3 or /usr/local/bin/python3"
        if services.in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    job_env = job_environment(tmp_path, backend)
    job_env["PATH"] = str(minimal_path_dir(tmp_path / "bin"))  # nothing at all: node is started by its path
    result, seconds = run_step(extension, "post-job", job_env)
    assert result.returncode == 0
    # The collector itself ran (no pre-job step here, so it says it cannot bound the job): not the shim's
    # "no Python found".
    [warning] = warnings_in(result.stdout)
    assert warning.startswith(WARNING + "no pre-job record"), warning
    assert seconds < 10


@pytest.mark.parametrize("kind", ["fake-3.8", "real-3.8", "real-2.7"])
def test_old_python_first_on_path_does_not_stop_the_report(
    extension, backend, docker_engine, registry, tmp_path, kind
):
    """An old interpreter first on PATH (actions/setup-python 3.8, a Python 2 image): the next Python >= 3.9
    on PATH runs the collector, and the push is reported."""
    bin_dir = tmp_path / "old-bin"
    if kind == "fake-3.8":
        old_python_stand_in(bin_dir / "python3", (3, 8, 18))
    else:
        interpreter = old_interpreter(kind.split("-")[1])
        if interpreter is None:
            pytest.skip(f"no Python {kind.split('-')[1]} interpreter on this machine (pyenv or PATH)")
        bin_dir.mkdir()
        for name in ("python3", "python"):
            (bin_dir / name).symlink_to(interpreter)
    job_env = job_environment(tmp_path, backend)
    job_env["PATH"] = f"{bin_dir}{os.pathsep}{job_env['PATH']}"
    before = len(backend.reports)
    pre, post, image = pre_push_post(extension, job_env, tmp_path, "oldpython")
    assert pre.returncode == 0 and post.returncode == 0
    assert warnings_in(pre.stdout + post.stdout) == [], pre.stdout + post.stdout
    delivered = [body for _, body in backend.reports[before:]]
    assert [push["reference"] for body in delivered for push in body["pushes"]] == [image]


def test_hung_collector_is_killed_at_the_deadline_with_its_children(extension, backend, tmp_path):
    job_env = job_environment(tmp_path, backend)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pid_file = tmp_path / "child.pid"
    hung = bin_dir / "python3"
    hung.write_text(
        "#!/bin/sh\n# A collector that hangs and ignores SIGTERM, with a child of its own.\n"
        "trap '' TERM\n"
        f"sleep 300 & echo $! > {pid_file}\n"
        "while :; do sleep 1; done\n",
        encoding="utf-8",
    )
    hung.chmod(0o755)
    job_env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    result, seconds = run_step(extension, "post-job", job_env, INPUT_DEADLINESECONDS="3")
    assert result.returncode == 0
    [warning] = warnings_in(result.stdout)
    assert warning.startswith(
        WARNING + "the collector did not finish within its 3 s deadline and was stopped"
    )
    assert 2.5 < seconds < 10
    child = int(pid_file.read_text().strip())
    for _ in range(50):
        if not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the hung collector's child outlived the deadline kill")


def test_failing_collector_is_one_warning_without_secrets(extension, backend, tmp_path):
    job_env = job_environment(tmp_path, backend)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    broken = bin_dir / "python3"
    broken.write_text(
        "#!/bin/sh\n"
        'echo "##vso[task.complete result=Failed]collector says fail"\n'
        'echo "token was $SYSTEM_ACCESSTOKEN" >&2\n'
        "exit 3\n",
        encoding="utf-8",
    )
    broken.chmod(0o755)
    job_env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    result, _ = run_step(extension, "post-job", job_env)
    assert result.returncode == 0
    [warning] = warnings_in(result.stdout)
    assert warning == WARNING + (
        "the collector exited with code 3: token was ***; images pushed by this job may be missing"
    )
    assert ACCESS_TOKEN not in result.stdout + result.stderr
    assert "##vso[task.complete" not in result.stdout  # shown inert, cannot fail the task


def _job_that_pushes(extension: Path, tmp_path: Path, backend: Backend, registry: str, index: int,
                     **extra: str) -> Tuple[subprocess.CompletedProcess, float, Dict[str, str]]:
    """Job ``index`` on one agent host (``tmp_path``): pre-job, one image pushed, post-job."""
    job_env = job_environment(tmp_path / f"job{index}", backend)
    (tmp_path / "_tool").mkdir(exist_ok=True)
    job_env["AGENT_TOOLSDIRECTORY"] = str(tmp_path / "_tool")  # the host's, shared by its jobs
    # Jobs of other tests on this machine's engine must not show up as this host's neighbours.
    job_env["IMAGETRAIL_ENGINE_DIR"] = str(tmp_path / "engines")
    job_env["BUILD_BUILDID"] = str(5000 + index)
    pre, _ = run_step(extension, "pre-job", job_env, **extra)
    assert pre.returncode == 0 and warnings_in(pre.stdout) == [], pre.stdout
    watcher_pid = load_json(next((Path(job_env["AGENT_TEMPDIRECTORY"]) / "imagetrail").glob(
        "job-*[0-9a-f].json")))["watcherPid"]
    try:
        context = tmp_path / f"ctx{index}"
        context.mkdir()
        (context / "Dockerfile").write_text(f"FROM scratch\nLABEL e2e={uuid.uuid4().hex}\n", encoding="utf-8")
        image = f"{registry}/e2e-outage-{uuid.uuid4().hex[:10]}/app:{index}"
        docker("build", "-q", "-t", image, str(context))
        docker("push", image)
        post, seconds = run_step(extension, "post-job", job_env, **extra)
    finally:
        stop_watcher(watcher_pid)
    assert post.returncode == 0, post.stdout + post.stderr
    assert ACCESS_TOKEN not in post.stdout + post.stderr and OIDC_TOKEN not in post.stdout + post.stderr
    return post, seconds, job_env


def _attached(post: subprocess.CompletedProcess) -> Dict:
    [line] = [text for text in post.stdout.splitlines()
              if text.startswith("##vso[task.addattachment type=imagetrail.report;")]
    return load_json(Path(line.split("]", 1)[1]))


@pytest.fixture(scope="module")
def outage_backend():
    server = Backend()
    yield server
    server.close()


@pytest.fixture(scope="module")
def outage_extension(tmp_path_factory, outage_backend) -> Path:
    """The extension as built for a backend that is about to have an outage."""
    return _extension_for(tmp_path_factory, outage_backend)


@pytest.mark.parametrize("mode, cause", [("hang", "no answer"), ("500", "HTTP 500")])
def test_backend_outage_costs_seconds_and_the_report_waits_with_the_run(
    outage_extension, outage_backend, docker_engine, registry, tmp_path, mode, cause
):
    """The shipped steps on one agent host during an outage, then the backend comes back."""
    extension, outage = outage_extension, outage_backend
    outage.mode = mode
    outage.reports.clear()
    outage.report_attempts = outage.health_checks = 0
    try:
        settings = {"IMAGETRAIL_PROBE_SECONDS": "1"}
        first, first_seconds, _ = _job_that_pushes(extension, tmp_path, outage, registry, 1, **settings)
        assert len(warnings_in(first.stdout)) == 1, first.stdout
        [warning] = warnings_in(first.stdout)
        assert "could not be sent" in warning and "attached to the run as imagetrail.report" in warning
        assert first_seconds < 20, first_seconds  # correctness bound; the goal (10 s) is benchmarked
        attempts = outage.report_attempts
        assert 1 <= attempts <= 3
        second, second_seconds, _ = _job_that_pushes(extension, tmp_path, outage, registry, 2, **settings)
        assert len(warnings_in(second.stdout)) == 1, second.stdout
        [warning] = warnings_in(second.stdout)
        assert "has not been answering since" in warning and cause in warning, warning
        assert second_seconds < 10, second_seconds
        assert outage.report_attempts == attempts  # the second job did not wait for the backend
        kept = [_attached(first)["reportId"], _attached(second)["reportId"]]
        assert len(set(kept)) == 2
        # The backend comes back: after two probe intervals, one job checks /healthz and delivers again.
        outage.mode = "up"
        time.sleep(2.2)
        third, _, third_env = _job_that_pushes(extension, tmp_path, outage, registry, 3, **settings)
        assert warnings_in(third.stdout) == [], third.stdout
        assert outage.health_checks >= 1
        delivered = [body["reportId"] for _, body in outage.reports]
        assert delivered == [load_json(Path(third_env["IMAGETRAIL_REPORT_FILE"]))["reportId"]]
        assert outage.errors == []
    finally:
        outage.mode = "up"
