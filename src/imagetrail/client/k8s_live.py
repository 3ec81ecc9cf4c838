"""Read the objects the inventory needs from a live cluster with the ``kubernetes`` client.

Lists every namespace at once (``/api/v1/pods`` and friends) in pages of ``limit`` objects,
following ``metadata.continue``, so a 50,000-pod cluster never comes back in one response.
Responses are read as raw JSON (``_preload_content=False``): the inventory needs plain dicts,
and building the client's model objects for every pod would cost more than the sync itself.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional, Tuple

DEFAULT_PAGE_SIZE = 500
GATEWAY_GROUP = "gateway.networking.k8s.io"


class ClusterAccessError(RuntimeError):
    """The cluster could not be read; the message says which list failed and why."""


def api_client(kubeconfig: Optional[str] = None, context: Optional[str] = None, in_cluster: bool = False):
    from kubernetes import client, config

    try:
        if in_cluster:
            config.load_incluster_config()
            return client.ApiClient()
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    except config.ConfigException as exc:
        where = "the in-cluster service account" if in_cluster else (kubeconfig or "the default kubeconfig")
        raise ClusterAccessError(f"cannot load cluster credentials from {where}: {exc}") from None


def _pages(list_call: Callable[..., Any], kind: str, page_size: int) -> List[Dict[str, Any]]:
    return list_all(list_call, kind, page_size)[0]


def list_all(list_call: Callable[..., Any], kind: str, page_size: int) -> Tuple[List[Dict[str, Any]], str]:
    """Every object of one kind, page by page, and the list's resourceVersion (where a watch starts)."""
    from kubernetes.client.exceptions import ApiException

    items: List[Dict[str, Any]] = []
    version = ""
    token: Optional[str] = None
    while True:
        kwargs: Dict[str, Any] = {"limit": page_size, "_preload_content": False}
        if token:
            kwargs["_continue"] = token
        try:
            response = list_call(**kwargs)
        except ApiException as exc:
            if exc.status == 404:
                raise
            raise ClusterAccessError(f"listing {kind} failed: HTTP {exc.status} {exc.reason}") from None
        except OSError as exc:  # urllib3 connection errors
            raise ClusterAccessError(f"listing {kind} failed: {type(exc).__name__}: {exc}") from None
        body = json.loads(response.data)
        for item in body.get("items") or []:
            item.setdefault("kind", kind)  # list responses omit each item's kind
            items.append(item)
        metadata = body.get("metadata") or {}
        # Every page of one list is the same snapshot; the first page's version names it.
        version = version or str(metadata.get("resourceVersion") or "")
        token = metadata.get("continue")
        if not token:
            return items, version


def core_lists(api) -> List[Tuple[Callable[..., Any], str]]:
    """(list call, kind) for the built-in kinds the inventory needs, cluster-wide."""
    from kubernetes import client

    core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
    networking = client.NetworkingV1Api(api)
    return [
        (core.list_pod_for_all_namespaces, "Pod"),
        (core.list_service_for_all_namespaces, "Service"),
        (networking.list_ingress_for_all_namespaces, "Ingress"),
        (apps.list_replica_set_for_all_namespaces, "ReplicaSet"),
        (batch.list_job_for_all_namespaces, "Job"),
    ]


def custom_list(api, group: str, version: str, plural: str) -> Callable[..., Any]:
    """The cluster-wide list (and watch) call of a custom resource."""
    from kubernetes import client

    custom = client.CustomObjectsApi(api)

    def call(**kwargs):
        return custom.list_cluster_custom_object(group, version, plural, **kwargs)

    return call


def fetch_objects(api, page_size: int = DEFAULT_PAGE_SIZE) -> List[Dict[str, Any]]:
    """Pods, Services, Ingresses, ReplicaSets, Jobs and (when the CRD exists) HTTPRoutes."""
    from kubernetes.client.exceptions import ApiException

    objects: List[Dict[str, Any]] = []
    for call, kind in core_lists(api):
        try:
            objects.extend(_pages(call, kind, page_size))
        except ApiException as exc:
            raise ClusterAccessError(f"listing {kind} failed: HTTP {exc.status} {exc.reason}") from None
    for version in ("v1", "v1beta1"):
        try:
            objects.extend(_pages(custom_list(api, GATEWAY_GROUP, version, "httproutes"), "HTTPRoute", page_size))
            break
        except ApiException:
            continue  # 404: the Gateway API CRD (this version) is not installed
    return objects
