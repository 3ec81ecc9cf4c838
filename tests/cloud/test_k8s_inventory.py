"""Normalising Kubernetes objects: owners, digests, exposure, bad input."""

from __future__ import annotations

import copy
import json

import pytest

from imagetrail.parsers.k8s_inventory import InventoryError, load_objects, normalize
from imagetrail.reference import running_digest
from tests.cloud.support import FIXTURES

DIGEST = "sha256:" + "ab" * 32


def fixture_objects(*names):
    objects = []
    for name in names:
        objects += load_objects((FIXTURES / name).read_text(), name)
    return objects


def pod(
    namespace,
    name,
    labels=None,
    owner=None,
    image="example.com/app:1",
    image_id=f"example.com/app@{DIGEST}",
    phase="Running",
):
    metadata = {"name": name, "namespace": namespace, "labels": labels or {}}
    if owner:
        metadata["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    return {
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": [{"name": "main", "image": image}]},
        "status": {"phase": phase, "containerStatuses": [{"name": "main", "imageID": image_id}]},
    }


def service(namespace, name, selector, kind="ClusterIP"):
    return {
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": selector, "type": kind},
    }


def test_sidecar_pod_lists_init_sidecar_and_main_containers_with_their_digest():
    inventory = normalize(fixture_objects("pod_sleep_istio-sidecar_containerd.json"), "kind", "file")
    kinds = {c.container: c.container_kind for c in inventory.containers}
    assert kinds == {"init": "init", "sidecar": "sidecar", "sleep": "container"}
    assert {c.digest for c in inventory.containers} == {
        "sha256:61673929bc39a86dca7d978b27fc632d3e590bc59cd8b2f386408751d007c91e"
    }
    assert all(c.workload_kind == "Pod" and c.workload_name == "sleep" for c in inventory.containers)


def test_docker_pullable_image_id_and_static_pod_owner():
    inventory = normalize(fixture_objects("pod_kube-apiserver-minikube_docker-pullable.yaml"), "mk", "file")
    (container,) = inventory.containers
    assert container.digest == "sha256:5ab3d676c426bfb272fb7605e6978b90d5676913636a6105688862849961386f"
    assert container.owner_note == "static pod managed by the kubelet on node minikube"


def test_loadbalancer_service_exposes_matching_pods_with_reason_and_address():
    objects = fixture_objects("service_loadbalancer_vllm.yaml")
    objects += [pod("ml-serving", "vllm-0", {"app": "vllm"}), pod("ml-serving", "other", {"app": "db"})]
    by_pod = {c.pod: c for c in normalize(objects, "c", "file").containers}
    assert [e.reason for e in by_pod["vllm-0"].exposure] == [
        "Service ml-serving/vllm-service type=LoadBalancer 192.0.2.200"
    ]
    assert by_pod["vllm-0"].exposure[0].address == "192.0.2.200"
    assert by_pod["other"].exposure == []


def test_nodeport_service_is_exposure():
    objects = fixture_objects("service_nodeport_nginx.json") + [pod("default", "nginx-1", {"app": "nginx"})]
    (container,) = normalize(objects, "c", "file").containers
    assert [e.reason for e in container.exposure] == ["Service default/nginx type=NodePort nodePort=30805"]


def test_ingress_routes_to_a_cluster_ip_service_and_exposes_its_pods():
    objects = fixture_objects("ingress_alb_myapp-api.yaml")
    objects += [
        service("myapp-api", "myapp-api-be", {"app": "api"}),
        pod("myapp-api", "api-1", {"app": "api"}),
        pod("other-ns", "api-2", {"app": "api"}),
    ]
    by_pod = {c.pod: c for c in normalize(objects, "c", "file").containers}
    (exposure,) = by_pod["api-1"].exposure
    assert exposure.reason.startswith("Ingress myapp-api/myapp-api-ig -> Service myapp-api/myapp-api-be")
    assert "api.example.com" in exposure.reason
    assert exposure.address == "alb-public-123456789.us-east-1.elb.amazonaws.com"
    assert by_pod["api-2"].exposure == []  # same labels, other namespace


def test_httproute_routes_to_service():
    objects = fixture_objects("httproute_httpbin_gloo.yaml")
    objects += [service("httpbin", "httpbin", {"app": "httpbin"}), pod("httpbin", "hb", {"app": "httpbin"})]
    (container,) = normalize(objects, "c", "file").containers
    (exposure,) = container.exposure
    assert exposure.reason == (
        "HTTPRoute httpbin/httpbin -> Service httpbin/httpbin "
        "(hostnames www.example.com; Gateway gloo-system/http)"
    )


def test_owner_walk_through_replicaset_and_job_objects():
    objects = [
        pod("a", "web-5d9c-xyz", {"pod-template-hash": "5d9c"}, owner=("ReplicaSet", "web-5d9c")),
        {
            "kind": "ReplicaSet",
            "metadata": {
                "name": "web-5d9c",
                "namespace": "a",
                "ownerReferences": [{"kind": "Deployment", "name": "web", "controller": True}],
            },
        },
        pod("a", "backup-28000000-abc", owner=("Job", "backup-28000000")),
        {
            "kind": "Job",
            "metadata": {
                "name": "backup-28000000",
                "namespace": "a",
                "ownerReferences": [{"kind": "CronJob", "name": "backup", "controller": True}],
            },
        },
        pod("a", "db-0", owner=("StatefulSet", "db")),
        pod("a", "agent-x", owner=("DaemonSet", "agent")),
    ]
    owners = {
        c.pod: (c.workload_kind, c.workload_name, c.owner_note)
        for c in normalize(objects, "c", "file").containers
    }
    assert owners == {
        "web-5d9c-xyz": ("Deployment", "web", None),
        "backup-28000000-abc": ("CronJob", "backup", None),
        "db-0": ("StatefulSet", "db", None),
        "agent-x": ("DaemonSet", "agent", None),
    }


def test_missing_replicaset_derives_deployment_from_pod_template_hash_and_says_so():
    objects = [pod("a", "web-7f8b9-q", {"pod-template-hash": "7f8b9"}, owner=("ReplicaSet", "web-7f8b9"))]
    (container,) = normalize(objects, "c", "file").containers
    assert (container.workload_kind, container.workload_name) == ("Deployment", "web")
    assert "pod-template-hash" in container.owner_note and "web-7f8b9" in container.owner_note


@pytest.mark.parametrize(
    "image_id, digest, reason",
    [
        (f"docker-pullable://repo/x@{DIGEST}", DIGEST, None),
        (f"docker.io/library/x@{DIGEST}", DIGEST, None),
        (DIGEST, None, "image config id, not a manifest digest"),
        (f"docker://{DIGEST}", None, "image config id"),
        ("", None, "no imageID in the container status"),
        ("something-odd", None, "unrecognised imageID form 'something-odd'"),
        ("repo@sha256:123", None, "not sha256:<64 hex>"),
    ],
)
def test_image_id_forms(image_id, digest, reason):
    found, why = running_digest(image_id, "repo/x:1")
    assert found == digest
    assert (why is None) if reason is None else (reason in why)


def test_pod_without_status_uses_a_digest_pinned_spec_or_reports_why():
    pinned = pod("a", "p1", image=f"example.com/app@{DIGEST}")
    del pinned["status"]
    unpinned = copy.deepcopy(pinned)
    unpinned["metadata"]["name"] = "p2"
    unpinned["spec"]["containers"][0]["image"] = "example.com/app:1"
    by_pod = {c.pod: c for c in normalize([pinned, unpinned], "c", "file").containers}
    assert by_pod["p1"].digest == DIGEST
    assert by_pod["p2"].digest is None and "no imageID" in by_pod["p2"].digest_error


def test_finished_pods_are_left_out_with_a_warning():
    inventory = normalize([pod("a", "done", phase="Succeeded"), pod("a", "up")], "c", "file")
    assert [c.pod for c in inventory.containers] == ["up"]
    assert inventory.warnings == ["1 pod(s) in phase Succeeded/Failed are not running and were left out"]


def test_kubectl_list_and_yaml_documents_are_read():
    listing = json.dumps({"kind": "List", "apiVersion": "v1", "items": [pod("a", "p")]})
    assert [o["metadata"]["name"] for o in load_objects(listing, "pods.json")] == ["p"]
    api_list = json.dumps({"kind": "PodList", "items": [{"metadata": {"name": "q"}}]})
    assert load_objects(api_list, "pods.json")[0]["kind"] == "Pod"
    yaml_text = "kind: Pod\nmetadata: {name: a}\n---\nkind: Service\nmetadata: {name: b}\n"
    assert [o["kind"] for o in load_objects(yaml_text, "x.yaml")] == ["Pod", "Service"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "pods.json: the file is empty"),
        ('{"kind": "List", "items": [{"metadata": {"name": "x"}}]}', "pods.json: $.items[0].kind is missing"),
        ('{"kind": "List", "items": {}}', "pods.json: $.items must be a list"),
        ('{"kind": "Pod", "metadata": {}}', "pods.json: $.metadata.name is missing in a Pod"),
        ('{"kind": "Pod", ', "pods.json: not valid JSON or YAML"),
        ("kind: [unclosed", "pods.json: not valid JSON or YAML"),
        ("[1]", "pods.json: $[0] is a int"),
    ],
)
def test_bad_input_names_the_file_and_field(text, message):
    with pytest.raises(InventoryError) as excinfo:
        load_objects(text, "pods.json")
    assert message in str(excinfo.value)


def test_thousands_of_namespaces_each_with_an_exposed_service():
    objects = []
    for n in range(3000):
        objects.append(pod(f"ns-{n}", "web", {"app": "web"}))
        objects.append(
            service(f"ns-{n}", "web", {"app": "web"}, kind="LoadBalancer" if n % 2 else "ClusterIP")
        )
    inventory = normalize(objects, "big", "file")
    assert len(inventory.containers) == 3000
    exposed = [c for c in inventory.containers if c.exposure]
    assert len(exposed) == 1500
    assert all(
        c.exposure[0].reason == f"Service {c.namespace}/web type=LoadBalancer (no address yet)"
        for c in exposed
    )
