"""``imagetrail k8s sync --watch``: list, watch, reconnect, relist on 410, resync; against the real backend.

The cluster is the list/watch API-server stand-in (tests/cloud/kube_api_server.py), driven through
the official ``kubernetes`` client; the backend is ``imagetrail serve`` on SQLite and PostgreSQL.
After every disturbance the backend's containers must equal what the stand-in holds: none lost,
none twice.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from imagetrail.client.api import ApiClient
from imagetrail.client.k8s_watch import ApiSink, ClusterWatch, WatchOptions
from imagetrail.parsers.k8s_inventory import normalize
from tests.cloud import scenario
from tests.cloud.kube_api_server import KubeApiServer
from tests.cloud.support import FIXTURES
from tests.support.live_server import running_server

REPO_ROOT = Path(__file__).resolve().parents[2]
NGINX_RS = "nginx-6d4cf56db6"  # the ReplicaSet the Trivy Operator sample report names


def cluster():
    objects = scenario.cluster_objects()
    nginx = {
        "kind": "Pod",
        "metadata": {"name": f"{NGINX_RS}-x1", "namespace": "default", "labels": {"app": "nginx"},
                     "ownerReferences": [{"kind": "ReplicaSet", "name": NGINX_RS, "controller": True}]},
        "spec": {"containers": [{"name": "nginx", "image": "nginx:1.16"}]},
        "status": {"phase": "Running", "containerStatuses": [
            {"name": "nginx", "image": "nginx:1.16", "imageID": f"docker.io/library/nginx@{scenario.NGINX}"}]},
    }
    report = yaml.safe_load((FIXTURES / "trivy-operator_vulnerabilityreport_replicaset-nginx.yaml").read_text())
    return [*objects, nginx, report]


def pod(name, labels=None, image_digest=scenario.TOOL):
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "prod", "labels": labels or {}},
        "spec": {"containers": [{"name": "main", "image": "registry.example.com/shop/tool:9"}]},
        "status": {"phase": "Running", "containerStatuses": [
            {"name": "main", "imageID": f"registry.example.com/shop/tool@{image_digest}"}]},
    }


def expected(kube: KubeApiServer):
    objects = [o for kind in ("Pod", "Service") for o in kube.by_kind[kind].values()]
    return sorted((c.namespace, c.pod, c.container, c.digest, bool(c.exposure))
                  for c in normalize(objects, "prod", "live").containers)


def stored(engine):
    with engine.connect() as connection:
        rows = connection.execute(sa.text(
            "SELECT namespace, pod, container, digest, exposed FROM running_containers")).all()
    return sorted((r[0], r[1], r[2], r[3], bool(r[4])) for r in rows)


def wait_for(condition, what, timeout=90.0):  # generous: the CI machine is shared
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def cli(*args, env):
    return subprocess.run([sys.executable, "-m", "imagetrail", *args], env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def backend(database_url, tmp_path):
    env = {**os.environ, "IMAGETRAIL_DATABASE_URL": database_url,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    with running_server(database_url, env=env) as url:
        created = cli("keys", "create", "--org", "*", "--scope", "ingest", env=env)
        assert created.returncode == 0, created.stderr
        engine = sa.create_engine(database_url)
        yield url, created.stdout.strip(), engine, env
        engine.dispose()


def start(kube, tmp_path, url, key, **options):
    from kubernetes import config

    (tmp_path / "kubeconfig").write_text(kube.kubeconfig())
    api = config.new_client_from_config(config_file=str(tmp_path / "kubeconfig"))
    watch = ClusterWatch(api, "prod", ApiSink(ApiClient(url, key)),
                         WatchOptions(flush_seconds=0.2, watch_timeout_seconds=5, max_backoff_seconds=0.5, **options))
    thread = threading.Thread(target=watch.run, daemon=True)
    thread.start()
    return watch, thread


@pytest.mark.e2e
def test_watch_follows_changes_survives_a_dropped_connection_and_410(backend, tmp_path):
    url, key, engine, _ = backend
    with KubeApiServer(cluster(), with_gateway_api=False, with_trivy_operator=True) as kube:
        watch, thread = start(kube, tmp_path, url, key)
        try:
            wait_for(lambda: stored(engine) == expected(kube) and len(stored(engine)) == 7, "the first full sync")
            # the sample report has no digest: it is joined through the running nginx pod its labels name
            def critical():
                with engine.connect() as connection:
                    return connection.execute(sa.text("SELECT critical FROM vulnerability_summaries WHERE digest = :d"),
                                              {"d": scenario.NGINX}).scalar()

            wait_for(lambda: critical() == 2, "the Trivy Operator report, joined by the running digest")

            # 1. ordinary changes: a new exposed pod, a pod gone, a Service exposing another pod
            kube.add(pod("tool-2", {"expose": "yes"}))
            kube.delete("Pod", "prod", "tool")
            service = copy.deepcopy(kube.by_kind["Service"][("prod", "public")])
            service["spec"]["selector"] = {}  # selects nothing: web, svc, nginx stop being exposed
            kube.modify(service)
            wait_for(lambda: stored(engine) == expected(kube), "the watched changes")
            assert not any(exposed for *_, exposed in stored(engine))
            lists_before = len([r for r in kube.requests if r.startswith("/api/v1/pods?") and "watch" not in r])

            # 2. a dropped connection while changes happen: resumed from the last version, not relisted
            kube.pause()
            paused_at = kube._version  # nothing newer reaches the watcher until the pause ends
            kube.add(pod("late-1"))
            kube.delete("Pod", "prod", "cfg")
            version_before_drop = int(watch._watchers[0].version)
            assert kube.drop_watches() >= 1
            kube.pause(False)
            wait_for(lambda: stored(engine) == expected(kube), "the changes made while the watch was down")
            resumed = kube.watch_requests("/api/v1/pods")
            # resumed from the last version seen: the one read above, or a later one of a bookmark that was
            # already on its way when the pause began (never one past the pause: those changes came as events)
            assert any(version_before_drop <= int(q["resourceVersion"][0]) <= paused_at
                       for q in resumed[1:] if q.get("resourceVersion")), (version_before_drop, paused_at, resumed)
            assert watch.stats.reconnects >= 1 and watch.stats.relists == 0
            assert len([r for r in kube.requests if r.startswith("/api/v1/pods?") and "watch" not in r]) == lists_before

            # 3. 410 Gone: history compacted while the watch was down, so the pods are listed again
            kube.pause()
            kube.add(pod("late-2"))
            kube.delete("Pod", "prod", "api")
            kube.compact()
            kube.drop_watches()
            kube.pause(False)
            wait_for(lambda: watch.stats.relists >= 1, "a relist after 410")
            wait_for(lambda: stored(engine) == expected(kube), "the state after the relist")
            assert len([r for r in kube.requests if r.startswith("/api/v1/pods?") and "watch" not in r]) > lists_before
        finally:
            watch.stop()
            thread.join(timeout=15)
        assert kube.errors == []
        assert watch.stats.full_syncs == 1  # everything after the first sync went as changes
        assert watch.stats.change_batches >= 3


@pytest.mark.e2e
def test_periodic_resync_sends_the_full_inventory_and_restarts_the_watches(backend, tmp_path):
    url, key, engine, _ = backend
    with KubeApiServer(cluster(), with_gateway_api=False) as kube:
        watch, thread = start(kube, tmp_path, url, key, resync_seconds=1.0)
        try:
            wait_for(lambda: watch.stats.full_syncs >= 3, "three full syncs")
            kube.add(pod("after-resync"))
            wait_for(lambda: stored(engine) == expected(kube), "a change after resyncs")
        finally:
            watch.stop()
            thread.join(timeout=15)
        assert kube.errors == []
        # every resync listed again and watched from the new list's version
        assert len(kube.watch_requests("/api/v1/pods")) >= 3


@pytest.mark.e2e
def test_cli_watch_runs_until_terminated_and_refuses_an_empty_file(backend, tmp_path):
    url, key, engine, env = backend
    env = {**env, "IMAGETRAIL_URL": url, "IMAGETRAIL_API_KEY": key}
    with KubeApiServer(cluster(), with_gateway_api=False) as kube:
        (tmp_path / "kubeconfig").write_text(kube.kubeconfig())
        process = subprocess.Popen(
            [sys.executable, "-m", "imagetrail", "k8s", "sync", "--cluster", "prod", "--watch",
             "--flush-seconds", "0.2", "--kubeconfig", str(tmp_path / "kubeconfig")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: stored(engine) == expected(kube) and stored(engine), "the CLI's first sync")
            kube.add(pod("from-cli"))
            wait_for(lambda: stored(engine) == expected(kube), "the CLI's watched change")
        finally:
            process.terminate()
            out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert "1 full sync(s)" in out and "change batch" in out

    # issue 9: a file without pods must not silently wipe the cluster
    (tmp_path / "empty.json").write_text('{"kind": "List", "apiVersion": "v1", "items": []}')
    refused = cli("k8s", "sync", "--cluster", "prod", "--from-file", str(tmp_path / "empty.json"), env=env)
    assert refused.returncode == 1 and "--allow-empty" in refused.stderr
    assert len(stored(engine)) == 8
    allowed = cli("k8s", "sync", "--cluster", "prod", "--allow-empty", "--from-file", str(tmp_path / "empty.json"),
                  env=env)
    assert allowed.returncode == 0, allowed.stderr
    assert stored(engine) == []
    both = cli("k8s", "sync", "--cluster", "prod", "--watch", "--from-file", str(tmp_path / "empty.json"), env=env)
    assert both.returncode == 2 and "--watch reads a live cluster" in both.stderr


def test_a_report_without_digest_takes_the_running_digest_of_its_own_namespace_only():
    watch = ClusterWatch(None, "prod", sink=None)
    objects = cluster()
    watch.objects["Pod"] = {(o["metadata"]["namespace"], o["metadata"]["name"]): o
                            for o in objects if o["kind"] == "Pod"}
    report = objects[-1]
    resolved = watch._with_digest(report)
    assert resolved["report"]["artifact"]["digest"] == scenario.NGINX
    assert "digest" not in report["report"]["artifact"]  # the cached object is left as the cluster has it
    elsewhere = copy.deepcopy(report)
    elsewhere["metadata"]["namespace"] = "tenant-b"  # its labels still name default/nginx-6d4cf56db6
    assert watch._with_digest(elsewhere) is None
    other_container = copy.deepcopy(report)
    other_container["metadata"]["labels"]["trivy-operator.container.name"] = "sidecar"
    assert watch._with_digest(other_container) is None
