"""Live sync through the kubernetes client against a local API server, and the CLI end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from imagetrail.client.k8s_live import fetch_objects
from imagetrail.parsers.k8s_inventory import normalize
from tests.cloud import scenario
from tests.cloud.kube_api_server import KubeApiServer
from tests.cloud.support import FIXTURES
from tests.support.live_server import running_server

REPO_ROOT = Path(__file__).resolve().parents[2]


def live_objects():
    objects = scenario.cluster_objects()
    objects[-1]["metadata"]["ownerReferences"] = [
        {"kind": "ReplicaSet", "name": "web-6f7d", "controller": True}
    ]
    objects.append(
        {
            "kind": "ReplicaSet",
            "metadata": {
                "name": "web-6f7d",
                "namespace": "prod",
                "ownerReferences": [{"kind": "Deployment", "name": "web", "controller": True}],
            },
        }
    )
    return objects


def test_fetch_pages_through_every_list_and_walks_owners(tmp_path):
    from kubernetes import config

    with KubeApiServer(live_objects(), with_gateway_api=False) as server:
        path = tmp_path / "kubeconfig"
        path.write_text(server.kubeconfig())
        objects = fetch_objects(config.new_client_from_config(config_file=str(path)), page_size=2)
    assert server.errors == []
    pod_requests = [r for r in server.requests if r.startswith("/api/v1/pods")]
    assert len(pod_requests) == 3 and "continue=Pod%3A2" in pod_requests[1]
    assert any(r.startswith("/apis/gateway.networking.k8s.io/v1beta1/httproutes") for r in server.requests)
    inventory = normalize(objects, "live", "live")
    web = [c for c in inventory.containers if c.pod == "web"][0]
    assert (web.workload_kind, web.workload_name, web.digest) == ("Deployment", "web", scenario.WEB)
    assert [e.reason for e in web.exposure] == ["Service prod/public type=LoadBalancer 203.0.113.10"]


def test_in_cluster_credentials_read_the_pod_token_and_trust_the_cluster_ca(tmp_path, monkeypatch):
    from kubernetes.config import incluster_config

    from imagetrail.client.k8s_live import api_client
    from tests.cloud.kube_api_server import TOKEN

    with KubeApiServer(live_objects(), with_gateway_api=False, tls=True) as server:
        (tmp_path / "token").write_text(TOKEN)
        (tmp_path / "ca.crt").write_text(server.ca_pem)
        monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(tmp_path / "token"))
        monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(tmp_path / "ca.crt"))
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", server.url.rsplit(":", 1)[1])
        objects = fetch_objects(api_client(in_cluster=True), page_size=50)
    assert server.errors == []
    assert {o["metadata"]["name"] for o in objects if o["kind"] == "Pod"} >= {"web", "api", "svc"}


def cli(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "imagetrail", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.e2e
def test_cli_sync_scans_query_and_gaps_against_the_real_server(tmp_path, database_url):
    base_env = {
        **os.environ,
        "IMAGETRAIL_DATABASE_URL": database_url,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")])),
    }
    with running_server(database_url, env=base_env) as url:
        created = cli("keys", "create", "--org", "*", "--scope", "admin", env=base_env)
        assert created.returncode == 0, created.stderr
        env = {**base_env, "IMAGETRAIL_URL": url, "IMAGETRAIL_API_KEY": created.stdout.strip()}
        headers = {"Authorization": f"Bearer {env['IMAGETRAIL_API_KEY']}"}
        for body in scenario.reports():
            assert (
                requests.post(f"{url}/v1/reports", json=body, headers=headers, timeout=30).status_code == 201
            )

        with KubeApiServer(live_objects()) as kube:
            (tmp_path / "kubeconfig").write_text(kube.kubeconfig())
            synced = cli(
                "k8s", "sync", "--cluster", "prod", "--kubeconfig", str(tmp_path / "kubeconfig"), env=env
            )
        assert synced.returncode == 0, synced.stderr
        assert "cluster prod: 6 containers in 6 pods (3 exposed)" in synced.stdout
        assert "1 container(s) have no known manifest digest" in synced.stderr

        scan_files = []
        for name, data in scenario.scans():
            (tmp_path / name).write_bytes(data)
            scan_files.append(str(tmp_path / name))
        (tmp_path / "cut.json").write_bytes(
            (FIXTURES / "grype_chainguard-ruby_image.json").read_bytes()[:900]
        )
        ingested = cli("scans", "ingest", *scan_files, str(tmp_path / "cut.json"), env=env)
        assert ingested.returncode == 1
        assert "web.json: trivy-image report, 1 image(s), 1 findings" in ingested.stdout
        assert "cut.json: not ingested" in ingested.stderr and "looks truncated" in ingested.stderr

        answer = cli("query", "--exposed", "--min-severity", "critical", "--json", env=env)
        assert answer.returncode == 0, answer.stderr
        rows = json.loads(answer.stdout)["rows"]
        assert [(r["workload_kind"], r["workload_name"], r["trail"]["commit"][:6]) for r in rows] == [
            ("Deployment", "web", "c0ffee")
        ]
        table = cli("query", "--min-severity", "high", env=env)
        assert "alice@contoso.example" in table.stdout and "2 of 2 rows" in table.stdout
        gaps = cli("query", "--gaps", "--format", "csv", env=env)
        lines = gaps.stdout.strip().splitlines()
        assert lines[0].startswith("cluster,namespace,workload_kind") and len(lines) == 4
        assert any("registry-not-pushed-to" in line for line in lines)
        plan = cli("remediate", "--exposed", "--dry-run", env=env)
        assert plan.returncode == 0 and plan.stdout.splitlines()[1].split()[:2] == ["would-create", "contoso/shop"], \
            plan.stdout
        # The other client commands read their answers through the API's response models too.
        coverage = cli("query", "--coverage", env=env)
        assert coverage.returncode == 0, coverage.stderr
        lines = coverage.stdout.splitlines()
        prod = lines[2].split()
        assert lines[0] == "clusters:" and prod[:2] == ["prod", "live"] and prod[3:] == ["6", "3"], lines
        assert prod[2].endswith("+00:00")  # every time with its offset
        assert "registries:" in lines and any(line.split()[:2] == ["registry.example.com", "3"] for line in lines)
        sheet = cli("query", "--coverage", "--format", "csv", env=env).stdout.strip().splitlines()
        assert sheet[0].startswith("section,name,source,synced_at,containers,untraced,registry,pushes")
        assert [line.split(",")[0] for line in sheet[1:]] == ["clusters", "registries", "projects", "projects",
                                                             "scanners"]
        close = cli("remediate", "--close-suggestions", env=env)
        assert close.returncode == 0 and close.stdout.strip() == "no item to suggest closing", close.stdout
