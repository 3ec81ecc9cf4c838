"""``imagetrail demo``: one command loads the sample map into a fresh database and serves it;
the explorer, the trail graph and the coverage page show it."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from imagetrail.demo import sample
from tests.support.live_server import free_port

VENV_BIN = Path(sys.executable).parent


def text(response: requests.Response) -> str:
    assert response.status_code == 200, response.text[:500]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.text)).split())


@pytest.mark.e2e
def test_demo_serves_a_populated_explorer_trail_and_coverage(tmp_path, database_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGETRAIL_")}
    if not database_url.startswith("sqlite"):
        env["IMAGETRAIL_DATABASE_URL"] = database_url  # SQLite: the demo's own imagetrail-demo.db
    port = free_port()
    process = subprocess.Popen([str(VENV_BIN / "imagetrail"), "demo", "--port", str(port)], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        lines = []
        while not any(line.startswith("serving on") for line in lines):
            line = process.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        printed = "".join(lines)
        key = re.search(r"(itk_\S+)", printed).group(1)
        assert "3 pipeline runs of 2 organisations" in printed and "5 containers (4 exposed)" in printed
        headers = {"Authorization": f"Bearer {key}"}
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline and process.poll() is None, "the demo server did not start"
            time.sleep(0.2)

        explorer = text(requests.get(f"{url}/explorer", headers=headers, timeout=30))
        assert "5 containers" in explorer
        for shown in ("shop-web-ci", "clamav-ci", "Alice Martin", "Bob Okafor", "203.0.113.20", "CVE-2021-36159"):
            assert shown in explorer, shown
        exposed = text(requests.get(f"{url}/explorer", params={"exposed": "true", "min_severity": "high"},
                                    headers=headers, timeout=30))
        assert "fabrikam/payments" in exposed and "scan.fabrikam.example" in exposed

        # the worker runs the arm64 manifest of an index the pipeline pushed: the trail crosses the relation
        trail = text(requests.get(f"{url}/images/{sample.RUBY_ARM64}", headers=headers, timeout=30))
        assert "shop-worker-ci" in trail and "77e1b0aa" in trail and "Alice Martin" in trail
        graph = requests.get(f"{url}/images/{sample.ALPINE}", headers=headers, timeout=30).text
        assert "<svg" in graph and "internet-exposed" in graph

        coverage = text(requests.get(f"{url}/coverage", headers=headers, timeout=30))
        for shown in (sample.CLUSTER, "contoso.azurecr.io", "fabrikam.azurecr.io", "grype", "trivy",
                      "registry-not-pushed-to", "nginx"):
            assert shown in coverage, shown
    finally:
        process.terminate()
        process.wait(timeout=15)

    again = subprocess.run([str(VENV_BIN / "imagetrail"), "demo", "--no-serve"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already holds pipelines or clusters" in again.stderr
