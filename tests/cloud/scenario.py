"""A small estate used by the store, explorer and API tests: two organisations, one cluster, three scans.

contoso/shop run 101 pushed shop/web (WEB) and shop/api as an index (API_INDEX) listing API_AMD64;
fabrikam/pay run 202 pushed pay/svc (SVC). The cluster runs those plus an nginx from Docker Hub
(never pushed by a pipeline), a shop/tool digest no report names, and a container with a config id.
"""

from __future__ import annotations

import json
from typing import Optional

from imagetrail import report as r
from imagetrail.ingest.cloud import InventoryIn
from imagetrail.parsers.k8s_inventory import normalize
from imagetrail.parsers.scans import parse_report
from tests.cloud.support import FIXTURES, digest, pipeline_report, push

WEB, API_INDEX, API_AMD64, SVC, NGINX, TOOL = (digest(n) for n in (1, 2, 3, 4, 5, 6))
REGISTRY = "registry.example.com"


def reports(server_url: Optional[str] = None):
    shop = pipeline_report(
        "contoso",
        "shop",
        "101",
        [
            push(f"{REGISTRY}/shop/web:1", WEB, "2024-05-01T10:00:00Z"),
            push(
                f"{REGISTRY}/shop/api:2",
                API_INDEX,
                "2024-05-01T10:01:00Z",
                platforms=[r.Platform(digest=API_AMD64, os="linux", architecture="amd64")],
            ),
        ],
        server_url=server_url,
        requester_email="alice@contoso.example",
        commit="c0ffee" + "0" * 34,
    )
    pay = pipeline_report(
        "fabrikam",
        "pay",
        "202",
        [push(f"{REGISTRY}/pay/svc:1", SVC, "2024-06-01T10:00:00Z")],
        server_url=server_url,
        requester_email="bob@fabrikam.example",
    )
    return [shop, pay]


def _pod(name, image, image_id, labels):
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "prod", "labels": labels},
        "spec": {"containers": [{"name": "main", "image": image}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "main", "imageID": image_id}]},
    }


def cluster_objects(include_web: bool = True):
    objects = [
        {
            "kind": "Service",
            "metadata": {"name": "public", "namespace": "prod"},
            "spec": {"type": "LoadBalancer", "selector": {"expose": "yes"}},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}},
        },
        _pod("api", f"{REGISTRY}/shop/api:2", f"{REGISTRY}/shop/api@{API_AMD64}", {}),
        _pod("svc", f"{REGISTRY}/pay/svc:1", f"{REGISTRY}/pay/svc@{SVC}", {"expose": "yes"}),
        _pod("nginx", "nginx:1.25", f"docker.io/library/nginx@{NGINX}", {"expose": "yes"}),
        _pod("tool", f"{REGISTRY}/shop/tool:9", f"{REGISTRY}/shop/tool@{TOOL}", {}),
        _pod("cfg", f"{REGISTRY}/shop/cfg:1", "sha256:" + "9" * 64, {}),
    ]
    if include_web:
        objects.append(_pod("web", f"{REGISTRY}/shop/web:1", f"{REGISTRY}/shop/web@{WEB}", {"expose": "yes"}))
    return objects


def inventory(include_web: bool = True) -> InventoryIn:
    return InventoryIn.model_validate(normalize(cluster_objects(include_web), "prod", "file").to_dict())


def trivy_report(
    fixture: str,
    image_digest: str,
    created_at: Optional[str] = None,
    severity: Optional[str] = None,
    drop_vulnerabilities: bool = False,
) -> bytes:
    document = json.loads((FIXTURES / fixture).read_bytes())
    document["Metadata"]["RepoDigests"] = [f"{REGISTRY}/x@{image_digest}"]
    if created_at:
        document["CreatedAt"] = created_at
    for result in document["Results"]:
        if drop_vulnerabilities:
            result["Vulnerabilities"] = []
        for vulnerability in result.get("Vulnerabilities") or []:
            if severity:
                vulnerability["Severity"] = severity
    return json.dumps(document).encode()


ALPINE = "trivy-action_alpine-3.10_image-report.json"  # 1 CRITICAL, fixed in 2.10.7-r0
CLAMAV = "trivysummary_acp-clamav-http-0.4.0_image-report.json"  # 8 HIGH, 13 MEDIUM


def scans():
    return [
        ("web.json", trivy_report(ALPINE, WEB, "2024-05-02T00:00:00Z")),
        ("api.json", trivy_report(CLAMAV, API_INDEX, "2024-05-02T00:00:00Z")),
        ("svc.json", trivy_report(ALPINE, SVC, "2024-06-02T00:00:00Z", severity="MEDIUM")),
    ]


def load(sessions, server_url: Optional[str] = None) -> None:
    """Everything through the product's own write paths (ingest, sync, scan ingest)."""
    from imagetrail.ingest import cloud as store
    from imagetrail.ingest.reports import ingest_report
    from imagetrail.store.db import transaction
    from tests.cloud.support import ingester

    for body in reports(server_url):
        ingest_report(sessions, body, ingester())
    with transaction(sessions) as session:
        store.replace_inventory(session, inventory())
    for name, data in scans():
        with transaction(sessions) as session:
            store.ingest_scan(session, parse_report(data, name), name)
