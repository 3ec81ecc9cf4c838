"""Locating the real services the tests use (Docker engine, registry, PostgreSQL, Chromium).

``scripts/start-services.sh`` installs and starts them; CI always runs it first. On a
developer machine without them, tests that need one are skipped with the reason; under
CI (``CI=true``) a missing service is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import urllib.request

import pytest

REGISTRY = os.environ.get("IMAGETRAIL_TEST_REGISTRY", "127.0.0.1:5000")
POSTGRES_URL = os.environ.get("IMAGETRAIL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(service: str, why: str) -> None:
    """Skip (locally) or fail (in CI) because a real service is missing."""
    message = f"{service} is not available ({why}); run scripts/start-services.sh as root"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                          capture_output=True, timeout=20).returncode == 0


def registry_available(registry: str = REGISTRY) -> bool:
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/", timeout=3) as response:
            return response.status == 200
    except OSError:
        return False


def postgres_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=2):
            return True
    except OSError:
        return False
