"""Run the real backend (`imagetrail serve`) in a subprocess for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Sequence, Tuple


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(database_url: str, env: Optional[Dict[str, str]] = None, timeout: float = 60.0,
                   args: Sequence[str] = ()) -> Iterator[str]:
    """Start `imagetrail serve [args]` on a free loopback port; yield its base URL."""
    with server_process(database_url, env, timeout, args) as (url, _process):
        yield url


@contextmanager
def server_process(database_url: str, env: Optional[Dict[str, str]] = None, timeout: float = 60.0,
                   args: Sequence[str] = ()) -> Iterator[Tuple[str, subprocess.Popen]]:
    """``running_server`` that also yields the process (to read its memory use)."""
    port = free_port()
    full_env = {**os.environ, "IMAGETRAIL_DATABASE_URL": database_url, **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "imagetrail", "serve", "--host", "127.0.0.1", "--port", str(port), *args],
        env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"imagetrail serve exited with {process.returncode}:\n{process.stdout.read()}")
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("imagetrail serve did not become ready in time")
            time.sleep(0.2)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
