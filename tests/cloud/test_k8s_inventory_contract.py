"""One inventory contract: the CLI builds the models the inventory and changes routes validate."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest

from imagetrail import inventory as contract
from imagetrail.client import k8s as cli
from imagetrail.client.k8s_watch import ApiSink
from imagetrail.ingest import cloud as store
from imagetrail.parsers.k8s_inventory import normalize
from tests.cloud import scenario


def test_the_cli_and_the_routes_use_the_same_models():
    assert store.InventoryIn is contract.Inventory and store.ChangesIn is contract.Changes
    inventory = normalize(scenario.cluster_objects(), "prod", "file", "2026-11-30T09:00:00+00:00")
    assert isinstance(inventory, contract.Inventory)
    assert all(isinstance(c, contract.Container) for c in inventory.containers)
    # what the CLI sends is what the route reads back, field for field
    assert contract.Inventory.model_validate_json(inventory.to_json()) == inventory
    assert inventory.to_dict()["collected_at"] == "2026-11-30T09:00:00Z"


def _pod(image: str) -> Dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": "big", "namespace": "prod"},
            "spec": {"containers": [{"name": "main", "image": image}]}, "status": {"phase": "Running"}}


def test_the_cli_refuses_what_the_backend_would_and_names_the_field(tmp_path, capsys):
    objects = tmp_path / "pods.json"
    objects.write_text(json.dumps({"kind": "List", "items": [_pod("registry.example.com/" + "a" * 1100 + ":1")]}))
    out = tmp_path / "inventory.json"
    assert cli.main(["sync", "--cluster", "prod", "--from-file", str(objects), "--output", str(out)]) == 1
    error = capsys.readouterr().err
    assert "inventory of cluster prod is not valid" in error and "image:" in error and "1024" in error
    assert not out.exists()

    objects.write_text(json.dumps({"kind": "List", "items": [_pod("registry.example.com/shop/api:2")]}))
    assert cli.main(["sync", "--cluster", "prod", "--from-file", str(objects), "--output", str(out)]) == 0
    written = contract.Inventory.model_validate_json(out.read_text())
    assert [(c.pod, c.image) for c in written.containers] == [("big", "registry.example.com/shop/api:2")]


class _Recorder:
    def __init__(self) -> None:
        self.sent: List[Dict[str, Any]] = []

    def request(self, method: str, path: str, data: str, headers: Dict[str, str]) -> Dict[str, Any]:
        self.sent.append({"method": method, "path": path, "body": data})
        return {}


def test_watch_changes_are_sent_as_the_changes_model():
    inventory = normalize(scenario.cluster_objects(), "prod", "live")
    by_pod: Dict[Any, List[contract.Container]] = {}
    for container in inventory.containers:
        by_pod.setdefault((container.namespace, container.pod), []).append(container)
    recorder = _Recorder()
    ApiSink(recorder).changes("prod", dict(reversed(list(by_pod.items()))), [("prod", "gone")])
    (sent,) = recorder.sent
    assert sent["path"] == "/v1/clusters/prod/changes"
    changes = contract.Changes.model_validate_json(sent["body"])
    assert [(p.namespace, p.pod) for p in changes.pods] == sorted(by_pod)
    assert [c for p in changes.pods for c in p.containers] == [c for key in sorted(by_pod) for c in by_pod[key]]
    assert changes.removed == [contract.PodRef(namespace="prod", pod="gone")]
    assert changes.collected_at is not None


def test_a_pod_s_containers_must_be_that_pod_s():
    container = normalize(scenario.cluster_objects(), "prod", "live").containers[0]
    with pytest.raises(ValueError, match=r"containers\[0\] belongs to"):
        contract.PodContainers(namespace=container.namespace, pod="another", containers=[container])
