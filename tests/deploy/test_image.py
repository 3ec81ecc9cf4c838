"""The Dockerfile, built with the real Docker engine and run against the real PostgreSQL.

No Docker Hub here: the image is built on a local Debian base (tests/support/docker_base.py) with
this machine's pip settings, on the host network (the engine runs without a bridge), and started
with host networking on a free port.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.support.docker_base import ensure_base_image, pip_build_args
from tests.support.live_server import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE = "imagetrail-deploy-test:latest"


def docker(*args, timeout=120, check=True):
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"docker {' '.join(args[:2])}: {result.stderr[-2000:]}"
    return result


@pytest.fixture(scope="module")
def image(docker_engine, tmp_path_factory):
    base = ensure_base_image(Path(tmp_path_factory.mktemp("base")))
    args = ["build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}", "-t", IMAGE]
    for name, value in pip_build_args().items():
        args += ["--build-arg", f"{name}={value}"]
    started = time.monotonic()
    docker(*args, str(REPO_ROOT), timeout=1800)
    seconds = time.monotonic() - started
    size = int(docker("image", "inspect", IMAGE, "--format", "{{.Size}}").stdout)
    print(f"\nimage {IMAGE}: {size / 1e6:.0f} MB, built in {seconds:.0f} s (cached layers count as 0 s)")
    return IMAGE


def get(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.read()


@pytest.mark.e2e
def test_image_is_multi_stage_non_root_and_checks_its_health(image):
    config = json.loads(docker("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["imagetrail"] and config["Cmd"] == ["serve"]
    assert "/readyz" in " ".join(config["Healthcheck"]["Test"])
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert dockerfile.count("\nFROM ") >= 2 and "COPY --from=build" in dockerfile
    # no build tools or pip left in what ships
    listing = docker("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c",
                     "ls /opt/imagetrail/bin; command -v gcc || true").stdout
    assert "imagetrail" in listing and "pip" not in listing and "gcc" not in listing


@pytest.mark.e2e
def test_image_serves_against_postgres_and_becomes_healthy(image, postgres_url):
    port = free_port()
    name = f"deploy-imagetrail-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", name, "--network", "host",
           "-e", f"IMAGETRAIL_DATABASE_URL={postgres_url}", "-e", f"IMAGETRAIL_PORT={port}",
           "-e", "IMAGETRAIL_HOST=127.0.0.1", "-e", "IMAGETRAIL_WORKERS=2",
           "--health-interval", "1s", "--health-start-period", "1s", image)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if get(f"http://127.0.0.1:{port}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            state = json.loads(docker("inspect", name).stdout)[0]["State"]
            assert state["Running"], docker("logs", name, check=False).stderr[-3000:]
            assert time.monotonic() < deadline, "the container did not become ready"
            time.sleep(0.5)
        while json.loads(docker("inspect", name).stdout)[0]["State"]["Health"]["Status"] != "healthy":
            assert time.monotonic() < deadline, "the HEALTHCHECK never passed"
            time.sleep(0.5)
        # the image's own CLI against the same database: a key that the served API accepts
        created = docker("exec", name, "imagetrail", "keys", "create", "--org", "*", "--scope", "read")
        status, body = get(f"http://127.0.0.1:{port}/v1/coverage",
                           {"Authorization": f"Bearer {created.stdout.strip()}"})
        assert status == 200 and "clusters" in json.loads(body)
        assert docker("exec", name, "id", "-u").stdout.strip() == "10001"
        logs = docker("logs", name).stderr
        assert "Started server process" in logs
        assert "alembic" not in logs.lower()  # startup is quiet: no migration plugin lines
    finally:
        docker("rm", "-f", name, check=False)
