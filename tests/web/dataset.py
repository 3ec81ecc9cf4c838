"""Realistic data for the web tests, loaded through the real API and the real parsers.

Collector reports are built with the collector's ``Report`` model around digests that the
real fixtures name; the Kubernetes inventory is the cloud layer's normaliser run over the
real fixture objects plus three pods composed here (no fixture pod is selected by a fixture
Service, so these give the exposed / internal mix the explorer needs); scans are the real
Trivy and Grype reports, uploaded unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

import requests

from imagetrail.report import (
    Job,
    Named,
    Person,
    PipelineContext,
    Push,
    Report,
    Repository,
    Run,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "cloud"  # one copy, shared with the cloud tests
CLUSTER = "aks-prod-weu"

# Digests named by the real fixtures (Trivy RepoDigests, zora's trivy-k8s report).
CLAMAV = "sha256:02b700f189e190e284a251c575aa470cf9b5a0dd1a51a341383d1cf009d0e395"
NGINX = "sha256:af296b188c7b7df99ba960ca614439c99cb7cf252ed7bbc23e90cfda59092305"
SIDECAR = "sha256:eaa478cdd0b8e1be7a4813bc1b01948b838e2feaa6d999e60c997dc823013824"
ISTIO_BASE = (
    "sha256:61673929bc39a86dca7d978b27fc632d3e590bc59cd8b2f386408751d007c91e"  # fixture pod, no report
)

SCAN_FILES = [
    "trivysummary_acp-clamav-http-0.4.0_image-report.json",
    "zora_trivy-k8s-report_kind-cluster.json",
    "grype_chainguard-ruby_image.json",
]
K8S_FILES = [
    "pod_sleep_istio-sidecar_containerd.json",
    "pod_kube-apiserver-minikube_docker-pullable.yaml",
    "service_loadbalancer_vllm.yaml",
    "service_nodeport_nginx.json",
    "ingress_alb_myapp-api.yaml",
    "httproute_httpbin_gloo.yaml",
]


@dataclass(frozen=True)
class Build:
    org: str
    project: str
    pipeline: str
    pipeline_id: str
    run_id: str
    run_number: str
    repo: str
    commit: str
    requester: str
    email: str
    references: List[str]
    digest: str
    pushed_at: str


BUILDS = [
    Build(
        "contoso",
        "payments",
        "clamav-http-ci",
        "17",
        "4711",
        "20240611.3",
        "https://contoso@dev.azure.com/contoso/payments/_git/clamav-http",
        "3f1c2b9a7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a",
        "Jane Doe",
        "jane.doe@contoso.example",
        [
            "quay.io/ukhomeofficedigital/acp-clamav-http:0.4.0",
            "quay.io/ukhomeofficedigital/acp-clamav-http:latest",
        ],
        CLAMAV,
        "2024-06-11T09:14:02Z",
    ),
    Build(
        "contoso",
        "payments",
        "edge-proxy-ci",
        "23",
        "4802",
        "20240612.1",
        "https://contoso@dev.azure.com/contoso/payments/_git/edge-proxy",
        "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d",
        "Ravi Kumar",
        "ravi.kumar@contoso.example",
        ["docker.io/library/nginx:1.25.0"],
        NGINX,
        "2024-06-12T07:40:55Z",
    ),
    Build(
        "fabrikam",
        "platform",
        "sidecar-build",
        "5",
        "991",
        "991",
        "https://fabrikam@dev.azure.com/fabrikam/platform/_git/k8s-sidecar",
        "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b",
        "Kim Lee",
        "kim.lee@fabrikam.example",
        ["quay.io/kiwigrid/k8s-sidecar:1.22.0"],
        SIDECAR,
        "2024-06-10T16:02:11Z",
    ),
]


def report_for(build: Build, server_url: Optional[str] = None) -> Dict[str, Any]:
    """The collector's report of one build; ``server_url`` is the run's System.CollectionUri."""
    context = PipelineContext(
        server_url=server_url or f"https://dev.azure.com/{build.org}/",
        organization=Named(id=None, name=build.org),
        project=Named(id=f"{build.project}-id", name=build.project),
        pipeline=Named(id=build.pipeline_id, name=build.pipeline),
        run=Run(
            id=build.run_id,
            number=build.run_number,
            attempt=1,
            reason="IndividualCI",
            url=f"https://dev.azure.com/{build.org}/{build.project}/_build/results?buildId={build.run_id}",
        ),
        job=Job(id="build-and-push", name="Build and push", attempt=1, stage="Build"),
        repository=Repository(
            id=f"{build.pipeline}-repo",
            name=build.repo.rsplit("/", 1)[-1],
            uri=build.repo,
            type="TfsGit",
            branch="refs/heads/main",
            commit=build.commit,
        ),
        requester=Person(id=None, name=build.requester, email=build.email),
    )
    pushes = []
    for reference in build.references:
        name, tag = reference.rsplit(":", 1)
        registry, repository = name.split("/", 1)
        pushes.append(
            Push(
                reference=reference,
                registry=registry,
                repository=repository,
                tag=tag,
                digest=build.digest,
                pushed_at=build.pushed_at,
            )
        )
    return Report(context=context, pushes=pushes, generated_at=build.pushed_at).to_dict()


def _pod(
    namespace: str,
    name: str,
    labels: Dict[str, str],
    owner_rs: str,
    container: str,
    image: str,
    image_id: str,
) -> Dict[str, Any]:
    """A running pod as the API server returns it (composed: the fixtures have none selected by a Service)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": owner_rs,
                    "controller": True,
                    "uid": f"uid-{owner_rs}",
                }
            ],
        },
        "spec": {"containers": [{"name": container, "image": image}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {"name": container, "image": image, "imageID": image_id, "ready": True, "restartCount": 0}
            ],
        },
    }


COMPOSED_PODS = [
    _pod(
        "ml-serving",
        "vllm-7d9f8b6c5d-x2x7q",
        {"app": "vllm", "pod-template-hash": "7d9f8b6c5d"},
        "vllm-7d9f8b6c5d",
        "server",
        "quay.io/ukhomeofficedigital/acp-clamav-http:0.4.0",
        f"quay.io/ukhomeofficedigital/acp-clamav-http@{CLAMAV}",
    ),
    _pod(
        "default",
        "nginx-5c6b7d8f9-abcde",
        {"app": "nginx", "pod-template-hash": "5c6b7d8f9"},
        "nginx-5c6b7d8f9",
        "nginx",
        "nginx:1.25.0",
        f"docker.io/library/nginx@{NGINX}",
    ),
    _pod(
        "apps",
        "app1-6f7d8c9b5-qwert",
        {"app": "app1", "pod-template-hash": "6f7d8c9b5"},
        "app1-6f7d8c9b5",
        "sidecar",
        "quay.io/kiwigrid/k8s-sidecar:1.22.0",
        f"quay.io/kiwigrid/k8s-sidecar@{SIDECAR}",
    ),
]


def kubernetes_objects() -> List[Dict[str, Any]]:
    from imagetrail.parsers.k8s_inventory import load_objects

    objects: List[Dict[str, Any]] = []
    for name in K8S_FILES:
        objects += load_objects((FIXTURES / name).read_text(), name)
    return objects + COMPOSED_PODS


def load(base_url: str, admin_key: str, server_urls: Optional[Dict[str, str]] = None) -> None:
    """Reports, one cluster inventory and three scanner reports, through the public API.

    ``server_urls`` maps an organisation to the collection URL its runs report (default
    ``https://dev.azure.com/{org}/``); remediation creates work items there.
    """
    from imagetrail.parsers.k8s_inventory import normalize

    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {admin_key}"
    for build in BUILDS:
        body = report_for(build, (server_urls or {}).get(build.org))
        response = http.post(f"{base_url}/v1/reports", json=body, timeout=30)
        assert response.status_code in (200, 201, 202), response.text
    inventory = normalize(kubernetes_objects(), CLUSTER, "file").to_dict()
    response = http.post(f"{base_url}/v1/clusters/{CLUSTER}/inventory", json=inventory, timeout=30)
    assert response.status_code in (200, 201, 202), response.text
    for name in SCAN_FILES:
        data = (FIXTURES / name).read_bytes()
        response = http.post(
            f"{base_url}/v1/scans",
            params={"file_name": name},
            data=data,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert response.status_code in (200, 201, 202), f"{name}: {response.status_code} {response.text}"


def trivy_findings(name: str, severities: set) -> List[tuple]:
    """(CVE, package) pairs of a Trivy image report at the given severities, read from the fixture."""
    report = json.loads((FIXTURES / name).read_text())
    return [
        (v["VulnerabilityID"], v["PkgName"])
        for result in report.get("Results") or []
        for v in result.get("Vulnerabilities") or []
        if v.get("Severity") in severities
    ]


def trivy_cves(name: str, severities: set) -> set:
    return {cve for cve, _ in trivy_findings(name, severities)}


def trivy_fixed_versions(name: str, severities: set) -> Dict[str, Set[str]]:
    """CVE -> the versions that fix it, for the findings of a Trivy image report at the given severities."""
    report = json.loads((FIXTURES / name).read_text())
    fixes: Dict[str, Set[str]] = {}
    for result in report.get("Results") or []:
        for v in result.get("Vulnerabilities") or []:
            if v.get("Severity") in severities:
                fixes.setdefault(v["VulnerabilityID"], set()).update(
                    part.strip() for part in (v.get("FixedVersion") or "").split(",") if part.strip()
                )
    return fixes
