"""A newcomer's first hour: the README quick tour as written, key creation on a fresh database,
a missing extra, and the Azure DevOps guide's trust step."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.cloud import scenario
from tests.cloud.support import FIXTURES, digest, pipeline_report, push
from tests.support.live_server import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
APP = "myregistry.azurecr.io/team/app:1.4"
APP_DIGEST = digest(77)


def tour_commands() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## Quick tour"):]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def environment(database_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGETRAIL_")}
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])  # the activated venv
    if not database_url.startswith("sqlite"):
        env["IMAGETRAIL_DATABASE_URL"] = database_url  # SQLite: the default ./imagetrail.db, as written
    return env


@contextmanager
def serve(cwd: Path, env: dict):
    """The README's first command, on a free port instead of 8080."""
    port = free_port()
    process = subprocess.Popen([str(VENV_BIN / "imagetrail"), "serve", "--port", str(port)], cwd=cwd, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read()
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "imagetrail serve did not become ready"
                time.sleep(0.2)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=15)


def run(args, cwd, env, **kwargs):
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=180, **kwargs)


def cluster_file() -> dict:
    return {"apiVersion": "v1", "kind": "List", "items": [
        {"kind": "Service", "metadata": {"name": "app", "namespace": "team"},
         "spec": {"type": "LoadBalancer", "selector": {"app": "app"}},
         "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}},
        {"kind": "Pod", "metadata": {"name": "app-1", "namespace": "team", "labels": {"app": "app"}},
         "spec": {"containers": [{"name": "app", "image": APP}]},
         "status": {"phase": "Running", "containerStatuses": [
             {"name": "app", "imageID": f"myregistry.azurecr.io/team/app@{APP_DIGEST}"}]}},
    ]}


@pytest.mark.e2e
def test_readme_quick_tour_runs_as_written_on_a_fresh_database(tmp_path, database_url):
    env = environment(database_url)
    (tmp_path / "cluster.json").write_text(json.dumps(cluster_file()))
    (tmp_path / "trivy-report.json").write_bytes(scenario.trivy_report(scenario.ALPINE, APP_DIGEST))
    (tmp_path / "grype-report.json").write_bytes((FIXTURES / "grype_chainguard-ruby_image.json").read_bytes())
    with serve(tmp_path, env) as (url, _):
        # before the tour: a pipeline's collector reported the push of the image the tour traces
        collector = run(["imagetrail", "keys", "create", "--org", "contoso", "--scope", "ingest"], tmp_path, env)
        report = pipeline_report("contoso", "team", "42", [push(APP, APP_DIGEST)], commit="c0ffee" + "1" * 34)
        sent = requests.post(f"{url}/v1/reports", json=report, timeout=30,
                             headers={"Authorization": f"Bearer {collector.stdout.strip()}"})
        assert sent.status_code == 201, sent.text

        script = tour_commands().replace("http://127.0.0.1:8080", url)
        (tmp_path / "tour.sh").write_text("set -euo pipefail -x\n" + script)
        tour = run(["bash", "tour.sh"], tmp_path, env)
    out = tour.stdout
    assert re.match(r"itk_\S+\n", out), out  # the first command prints one key and nothing else on stdout
    assert "cluster prod: 1 containers in 1 pods (1 exposed)" in out
    assert "trivy-report.json: trivy-image report, 1 image(s)" in out
    assert "grype-report.json: grype report, 1 image(s), 3 findings" in out
    assert "c0ffee" in out and "contoso" in out  # the trace: commit and organisation
    assert "1 of 1 rows" in out
    assert tour.returncode == 0, tour.stderr[-3000:]
    assert re.search(r"^would-create +contoso/team ", out, re.MULTILINE), out


def test_keys_create_migrates_a_fresh_database_first(tmp_path, database_url):
    env = environment(database_url)
    created = run([str(VENV_BIN / "imagetrail"), "keys", "create", "--org", "contoso", "--scope", "read"],
                  tmp_path, env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("itk_") and "store it now" in created.stderr
    listed = run([str(VENV_BIN / "imagetrail"), "keys", "list"], tmp_path, env)
    assert key.split("_")[1] in listed.stdout  # the printed key exists


def test_keys_create_on_an_unusable_database_prints_no_key(tmp_path):
    env = {**environment("x"), "IMAGETRAIL_DATABASE_URL": f"sqlite:///{tmp_path}/missing-dir/db.sqlite"}
    created = run([str(VENV_BIN / "imagetrail"), "keys", "create", "--org", "contoso", "--scope", "read"],
                  tmp_path, env)
    assert created.returncode == 1
    assert created.stdout == ""
    assert "no key was created" in created.stderr and "Traceback" not in created.stderr


def test_a_missing_server_extra_names_the_install_command(tmp_path):
    # A Python that finds ImageTrail but not the server extra: hide fastapi and friends.
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class _Missing:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('fastapi', 'uvicorn', 'sqlalchemy', 'alembic'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, _Missing())\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO_ROOT / "src")])}
    result = run([sys.executable, "-m", "imagetrail", "serve"], tmp_path, env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "pip install 'imagetrail[server]'" in result.stderr and "pip install '.[server]'" in result.stderr
    collector = run([sys.executable, "-m", "imagetrail", "--version"], tmp_path, env)
    assert collector.returncode == 0  # the base install still works


def test_serve_logs_are_quiet_by_default(tmp_path, sqlite_url):
    env = {**environment(sqlite_url), "IMAGETRAIL_DATABASE_URL": sqlite_url}
    with serve(tmp_path, env) as (_, process):
        pass
    output = process.stdout.read()
    assert "Uvicorn running on" in output or "Application startup complete" in output
    assert "alembic" not in output.lower(), output


def test_azure_devops_guide_covers_trusting_the_organisation():
    guide = (REPO_ROOT / "docs/azure-devops.md").read_text()
    section = re.search(r"\n## \d+\. Trust the organisation.*?(?=\n## )", guide, re.S).group(0)
    assert "IMAGETRAIL_TRUST_AZURE_DEVOPS_ORGS" in section and "System.CollectionId" in section
    from imagetrail.settings import Settings

    settings = Settings.from_env({"IMAGETRAIL_TRUST_AZURE_DEVOPS_ORGS": "0A1B2C3D-0000-4000-8000-000000000001"})
    assert settings.azure_devops_org_ids == ["0a1b2c3d-0000-4000-8000-000000000001"]
