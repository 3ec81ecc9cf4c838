"""A real Distribution registry of the test's own, with htpasswd users and notifications aimed at a test server,
and the engine-less clients (buildah, podman, skopeo) on vfs storage."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from tests.support import services

USERS = {"alice": "alice-secret", "bob": "bob-secret"}


def need(tool: str) -> str:
    found = shutil.which(tool)
    if not found:
        services.unavailable(tool, "not on PATH")
    return found


def cli(*args: str, env: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imagetrail", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def create_key(database_url: str, org: str, scope: str) -> str:
    result = cli("keys", "create", "--org", org, "--scope", scope, env={"IMAGETRAIL_DATABASE_URL": database_url})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[0]


def _htpasswd(path: Path) -> None:
    import bcrypt  # a test extra: writes the registry's htpasswd file

    path.write_text("".join(f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
                            for user, pw in USERS.items()))


@contextmanager
def notifying_registry(directory: Path, port: int, endpoint: Optional[str], token: str = "") -> Iterator[str]:
    """``docker-registry serve`` on 127.0.0.1:port with htpasswd users, notifying ``endpoint`` (if any)
    with ``Authorization: Bearer token``."""
    binary = need("docker-registry")
    directory.mkdir(parents=True, exist_ok=True)
    _htpasswd(directory / "htpasswd")
    config = directory / "config.yml"
    config.write_text(f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {directory / 'data'}
http:
  addr: 127.0.0.1:{port}
auth:
  htpasswd:
    realm: imagetrail-test
    path: {directory / 'htpasswd'}
""" + (f"""notifications:
  endpoints:
    - name: imagetrail
      url: {endpoint}
      headers:
        Authorization: [Bearer {token}]
      timeout: 3s
      threshold: 5
      backoff: 1s
""" if endpoint else ""))
    log = open(directory / "registry.log", "w")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    host = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://{host}/v2/", timeout=2)
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not start: {(directory / 'registry.log').read_text()}")
            time.sleep(0.2)
        yield host
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


class Containers:
    """buildah / podman / skopeo with their own vfs storage under one directory (no engine, no daemon)."""

    def __init__(self, directory: Path):
        # podman refuses a runroot path longer than 50 characters.
        self.runroot = tempfile.mkdtemp(prefix="rg-run-")
        self.storage = ["--root", str(directory / "root"), "--runroot", self.runroot, "--storage-driver", "vfs"]
        self.env = {**os.environ, "REGISTRY_AUTH_FILE": str(directory / "auth.json"),
                    "XDG_RUNTIME_DIR": str(directory / "xdg"), "TMPDIR": str(directory / "tmp")}
        (directory / "tmp").mkdir(parents=True, exist_ok=True)
        (directory / "auth.json").write_text('{"auths": {}}')
        (directory / "xdg").mkdir(parents=True, exist_ok=True)
        self.directory = directory

    def close(self) -> None:
        shutil.rmtree(self.runroot, ignore_errors=True)

    def run(self, tool: str, *args: str) -> str:
        result = subprocess.run([need(tool), *self.storage, *args] if tool != "skopeo" else [need(tool), *args],
                                capture_output=True, text=True, timeout=300, env=self.env)
        assert result.returncode == 0, f"{tool} {' '.join(args)}: {result.stderr}"
        return result.stdout.strip()

    def buildah_image(self, name: str, labels: Dict[str, str]) -> str:
        """A one-file image built from scratch with buildah, labelled; returns its local name."""
        container = self.run("buildah", "from", "scratch")
        payload = self.directory / f"{container}.txt"
        payload.write_text(f"{name}\n")
        self.run("buildah", "copy", container, str(payload), "/hello.txt")
        label_args: List[str] = []
        for key, value in labels.items():
            label_args += ["--label", f"{key}={value}"]
        if label_args:
            self.run("buildah", "config", *label_args, container)
        self.run("buildah", "commit", container, f"localhost/{name}")
        return f"localhost/{name}"

    def push(self, tool: str, image: str, destination: str, user: str) -> str:
        """Push ``image`` to ``destination`` (registry/repo:tag) as ``user``; returns the pushed digest."""
        digest_file = self.directory / "pushed-digest"
        self.run(tool, "push", "--tls-verify=false", "--creds", f"{user}:{USERS[user]}", "--digestfile",
                 str(digest_file), image, f"docker://{destination}")
        return digest_file.read_text().strip()
