"""deploy/: the kustomize manifests render with the real kubectl and validate against the Kubernetes schemas;
the compose file and the manifests only set settings the backend knows."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import services

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"


def kubectl() -> str:
    found = shutil.which("kubectl")
    if not found:
        services.unavailable("kubectl", "not on PATH")
    return found


@pytest.fixture(scope="module")
def rendered():
    result = subprocess.run([kubectl(), "kustomize", str(DEPLOY / "kubernetes")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def by_kind(documents, kind, name):
    return next(d for d in documents if d["kind"] == kind and d["metadata"]["name"].startswith(name))


def test_manifests_validate_against_the_kubernetes_schemas(rendered):
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    for document in rendered:
        kubernetes_validate.validate(document, version, strict=True)  # raises with the field on an error
    assert {d["kind"] for d in rendered} >= {"Namespace", "Deployment", "Service", "ServiceAccount",
                                             "ClusterRole", "ClusterRoleBinding", "ConfigMap"}
    broken = {**by_kind(rendered, "Service", "imagetrail"), "spec": {"prots": []}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_the_sync_role_reads_exactly_what_the_watch_lists(rendered):
    from imagetrail.client import k8s_watch

    role = by_kind(rendered, "ClusterRole", "imagetrail-sync")
    granted = {(group, resource) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"]}
    assert all(set(rule["verbs"]) == {"get", "list", "watch"} for rule in role["rules"])  # read-only
    needed = {("", "pods"), ("", "services"), ("apps", "replicasets"), ("batch", "jobs"),
              ("networking.k8s.io", "ingresses"), (k8s_watch.GATEWAY_GROUP, "httproutes")}
    needed |= {(k8s_watch.TRIVY_GROUP, plural) for plural in k8s_watch.REPORT_KINDS.values()}
    assert granted == needed
    binding = by_kind(rendered, "ClusterRoleBinding", "imagetrail-sync")
    sync = by_kind(rendered, "Deployment", "imagetrail-sync")
    pod = sync["spec"]["template"]["spec"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": pod["serviceAccountName"],
                                    "namespace": "imagetrail"}]
    assert {"--in-cluster", "--watch"} <= set(pod["containers"][0]["args"])
    assert sync["spec"]["replicas"] == 1


def test_every_workload_runs_as_non_root_with_a_read_only_root(rendered):
    for name in ("imagetrail", "imagetrail-sync"):
        pod = by_kind(rendered, "Deployment", name)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
            assert context["capabilities"]["drop"] == ["ALL"]
    backend = by_kind(rendered, "Deployment", "imagetrail")["spec"]["template"]["spec"]["containers"][0]
    assert backend["readinessProbe"]["httpGet"]["path"] == "/readyz"


def _known_settings() -> set:
    sources = [REPO_ROOT / "src/imagetrail/settings.py", REPO_ROOT / "src/imagetrail/server/cli.py",
               REPO_ROOT / "src/imagetrail/client/api.py"]
    return {name for path in sources for name in re.findall(r'"(IMAGETRAIL_[A-Z_]+)"', path.read_text())}


def test_compose_and_manifests_set_only_settings_the_backend_reads(rendered):
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    backend = compose["services"]["imagetrail"]
    assert backend["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in compose["services"]["postgres"]
    assert (DEPLOY / backend["build"]["context"] / backend["build"]["dockerfile"]).resolve() == REPO_ROOT / "Dockerfile"
    assert backend["environment"]["IMAGETRAIL_DATABASE_URL"].startswith("postgresql+psycopg://")
    used = set(backend["environment"])
    for document in rendered:
        if document["kind"] == "ConfigMap":
            used |= {k for k in document["data"] if k != "IMAGETRAIL_CLUSTER"}  # the sync's own argument
        if document["kind"] == "Deployment":
            used |= {e["name"] for c in document["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
    unknown = used - _known_settings()
    assert not unknown, f"settings nothing reads: {sorted(unknown)}"
