"""Incremental cluster changes, the empty-inventory guard and Trivy Operator reports, through the real app."""

from __future__ import annotations

import json

import pytest
import yaml

from imagetrail.auth import Principal
from imagetrail.parsers.scans import ScanFormatError, parse_report
from tests.cloud import scenario
from tests.cloud.support import FIXTURES, digest, reader

OPERATOR_FIXTURE = FIXTURES / "trivy-operator_vulnerabilityreport_replicaset-nginx.yaml"


def _containers(api):
    from sqlalchemy import func, select

    from imagetrail.store.models.cloud import RunningContainer

    with api.app.state.sessions() as session:
        rows = session.execute(
            select(RunningContainer.namespace, RunningContainer.pod, RunningContainer.container, func.count())
            .group_by(RunningContainer.namespace, RunningContainer.pod, RunningContainer.container)
        ).all()
    assert all(count == 1 for *_, count in rows), rows  # never a container twice
    return sorted((ns, pod) for ns, pod, _, _ in rows)


def _sync(api, **extra):
    body = {**scenario.inventory().model_dump(mode="json"), **extra}
    return api.client.post("/v1/clusters/prod/inventory", json=body)


def _empty(**extra):
    return {"cluster": "prod", "source": "file", "pods": 0, "containers": [], **extra}


def test_empty_inventory_for_a_cluster_with_containers_is_refused_unless_allowed(api):
    assert _sync(api).status_code == 200
    refused = api.client.post("/v1/clusters/prod/inventory", json=_empty())
    assert refused.status_code == 409
    assert "has 6 running container(s) and this inventory has none" in refused.json()["detail"]
    assert "--allow-empty" in refused.json()["detail"]
    assert len(_containers(api)) == 6  # nothing was changed
    allowed = api.client.post("/v1/clusters/prod/inventory", json=_empty(allow_empty=True))
    assert allowed.status_code == 200 and allowed.json()["replaced"] == 6
    assert _containers(api) == []
    # an empty cluster may stay empty, and a new cluster may start empty
    assert api.client.post("/v1/clusters/prod/inventory", json=_empty()).status_code == 200
    fresh = {**_empty(), "cluster": "new"}
    assert api.client.post("/v1/clusters/new/inventory", json=fresh).status_code == 200


def _pod_body(namespace, pod, container_digest, image="registry.example.com/shop/web:2"):
    return {
        "namespace": namespace,
        "pod": pod,
        "containers": [{
            "namespace": namespace, "pod": pod, "workload_kind": "Deployment", "workload_name": pod,
            "container": "main", "container_kind": "container", "image": image,
            "digest": container_digest, "digest_error": None, "exposure": [], "owner_note": None,
        }],
    }


def test_changes_replace_pods_whole_and_a_resent_batch_changes_nothing_more(api):
    assert _sync(api).status_code == 200
    body = {
        "cluster": "prod",
        "pods": [_pod_body("prod", "web", digest(40)), _pod_body("prod", "web-2", digest(41))],
        "removed": [{"namespace": "prod", "pod": "tool"}, {"namespace": "prod", "pod": "never-was"}],
    }
    for _ in range(2):  # a retry after a lost answer
        answer = api.client.post("/v1/clusters/prod/changes", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"cluster": "prod", "containers": 6, "pods_changed": 2, "pods_removed": 2}
    pods = _containers(api)
    assert ("prod", "web-2") in pods and ("prod", "tool") not in pods and len(pods) == 6
    page = api.client.get("/v1/query", params={"namespace": "prod"}).json()
    web = [row for row in page["rows"] if row["pod"] == "web"][0]
    assert web["digest"] == digest(40)
    coverage = api.client.get("/v1/coverage").json()
    assert [c["containers"] for c in coverage["clusters"] if c["name"] == "prod"] == [6]


def test_changes_are_refused_with_the_reason(api):
    unknown = api.client.post("/v1/clusters/prod/changes", json={"cluster": "prod", "pods": [], "removed": []})
    assert unknown.status_code == 409 and "no full inventory yet" in unknown.json()["detail"]
    assert _sync(api).status_code == 200
    wrong_pod = _pod_body("prod", "web", digest(40))
    wrong_pod["pod"] = "other"
    mismatch = api.client.post("/v1/clusters/prod/changes", json={"cluster": "prod", "pods": [wrong_pod]})
    assert mismatch.status_code == 422 and "pods[0]" in mismatch.json()["detail"]
    url_mismatch = api.client.post("/v1/clusters/other/changes", json={"cluster": "prod"})
    assert url_mismatch.status_code == 422 and "the URL names 'other'" in url_mismatch.json()["detail"]
    too_many = {"cluster": "prod", "removed": [{"namespace": "n", "pod": f"p{i}"} for i in range(5001)]}
    assert api.client.post("/v1/clusters/prod/changes", json=too_many).status_code == 422
    assert api.client.post("/v1/clusters/prod/changes", content=b"{").status_code == 422
    one_org = Principal(kind="api-key", subject="key:a", scopes=frozenset({"ingest"}),
                        organizations=frozenset({"contoso"}))
    api.act_as(one_org)
    refused = api.client.post("/v1/clusters/prod/changes", json={"cluster": "prod"})
    assert refused.status_code == 403 and "--org '*'" in refused.json()["detail"]
    assert len(_containers(api)) == 6


def test_changes_route_needs_the_ingest_scope():
    from imagetrail.auth.route_scopes import ROUTE_SCOPES

    assert ROUTE_SCOPES[("POST", "/v1/clusters/{cluster}/changes")] == "ingest"


def _operator_report(report_digest=None):
    document = yaml.safe_load(OPERATOR_FIXTURE.read_text())
    if report_digest:
        document["report"]["artifact"]["digest"] = report_digest
    return document


def test_trivy_operator_reports_are_joined_by_digest(api):
    assert _sync(api).status_code == 200
    listed = {"apiVersion": "v1", "kind": "List", "items": [_operator_report(scenario.NGINX), _operator_report()]}
    answer = api.client.post("/v1/scans", params={"file_name": "operator"}, content=json.dumps(listed))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["format"], body["scanner"]) == ("trivy-operator", "trivy")
    assert [(i["digests"], i["findings"], i["artifact"]) for i in body["images"]] == [
        ([scenario.NGINX], 2, "index.docker.io/library/nginx:1.16")
    ]
    assert "report.artifact.digest is missing" in body["warnings"][0]
    rows = api.client.get("/v1/query", params={"min_severity": "critical"}).json()["rows"]
    assert [r["pod"] for r in rows] == ["nginx"]
    assert {c["id"] for c in rows[0]["vulnerabilities"]["top"]} == {"CVE-2019-20367", "CVE-2018-25009"}


def test_a_trivy_operator_report_without_a_digest_alone_is_refused(api):
    answer = api.client.post("/v1/scans", params={"file_name": "vr.json"}, content=json.dumps(_operator_report()))
    assert answer.status_code == 422
    assert "holds no VulnerabilityReport with an image digest" in answer.json()["detail"]
    api.act_as(reader("contoso"))
    assert api.client.get("/v1/coverage").status_code == 200


def test_a_cluster_vulnerability_report_with_a_digest_is_parsed_with_its_own_scan_time():
    report = _operator_report(scenario.SVC)
    report["kind"] = "ClusterVulnerabilityReport"
    del report["metadata"]["namespace"]
    report["report"]["updateTimestamp"] = "2023-11-30T08:29:42Z"
    parsed = parse_report(json.dumps(report).encode(), "cvr.json")
    assert parsed.format == "trivy-operator" and parsed.scanner_version == "0.57.1"
    (image,) = parsed.images
    assert image.digests == [scenario.SVC] and image.scanned_at.isoformat() == "2023-11-30T08:29:42+00:00"
    assert [(f.vulnerability_id, f.package, f.fixed_version) for f in image.findings] == [
        ("CVE-2019-20367", "libbsd0", "0.9.1-2+deb10u1"), ("CVE-2018-25009", "libwebp6", None)]
    wrong = {"apiVersion": "v1", "kind": "List", "items": [{**report, "kind": "ConfigAuditReport"}]}
    with pytest.raises(ScanFormatError, match=r"items\[0\]\.kind is 'ConfigAuditReport'"):
        parse_report(json.dumps(wrong).encode(), "mixed.json")
