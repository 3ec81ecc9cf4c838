"""Normalise Kubernetes objects into the running-container inventory the backend stores.

Input: Pods, Services, Ingresses, Gateway API HTTPRoutes, ReplicaSets and Jobs as the API server
(or ``kubectl get ... -o json|yaml``) returns them. Output: one record per container (main, init,
native sidecar, ephemeral) with its owning workload, running digest and internet exposure.

Exposure rules (see docs/cloud.md): a Service of type LoadBalancer or NodePort, or with
``spec.externalIPs``, whose selector matches the pod's labels; or an Ingress / HTTPRoute whose
backend is a Service (of any type) selecting the pod.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, Dict, Iterable, List, Optional, Tuple

from imagetrail.gc_pause import paused_gc
from imagetrail.inventory import Container, Exposure, Inventory
from imagetrail.reference import running_digest

KINDS = ("Pod", "Service", "Ingress", "HTTPRoute", "ReplicaSet", "Job")
_DONE_PHASES = ("Succeeded", "Failed")


class InventoryError(ValueError):
    """The input is not Kubernetes objects we can read; the message names the file and field."""


# The records are the inventory contract's own models: the backend validates the same ones.
ContainerRecord = Container


# --- reading files ----------------------------------------------------------------------------


def load_objects(text: str, source: str) -> List[Dict[str, Any]]:
    """Objects from JSON or YAML text: a ``List`` (kubectl -A -o json), one object, or YAML documents."""
    stripped = text.lstrip()
    if not stripped:
        raise InventoryError(f"{source}: the file is empty")
    with paused_gc():
        return _load_objects(text, stripped, source)


def _load_objects(text: str, stripped: str, source: str) -> List[Dict[str, Any]]:
    try:
        if stripped[0] in "{[":
            documents = [json.loads(text)]
        else:
            import yaml  # PyYAML ships with the kubernetes client

            documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except ValueError as exc:  # json.JSONDecodeError and yaml.YAMLError's message
        raise InventoryError(f"{source}: not valid JSON or YAML ({exc})") from None
    except Exception as exc:  # yaml.YAMLError does not subclass ValueError
        raise InventoryError(f"{source}: not valid JSON or YAML ({type(exc).__name__}: {exc})") from None
    objects: List[Dict[str, Any]] = []
    for number, document in enumerate(documents):
        where = source if len(documents) == 1 else f"{source} (document {number + 1})"
        objects.extend(_flatten(document, where, "$"))
    return objects


def _flatten(document: Any, where: str, path: str) -> Iterable[Dict[str, Any]]:
    if isinstance(document, list):
        for index, item in enumerate(document):
            yield from _flatten(item, where, f"{path}[{index}]")
        return
    if not isinstance(document, dict):
        raise InventoryError(f"{where}: {path} is a {type(document).__name__}, expected a Kubernetes object")
    kind = document.get("kind")
    if not isinstance(kind, str) or not kind:
        raise InventoryError(f"{where}: {path}.kind is missing; expected a List or an object such as Pod")
    if kind == "List" or kind.endswith("List"):
        items = document.get("items")
        if not isinstance(items, list):
            raise InventoryError(f"{where}: {path}.items must be a list in a {kind}")
        item_kind = kind[:-4] if kind != "List" else None
        for index, item in enumerate(items):
            if isinstance(item, dict) and item_kind and not item.get("kind"):
                item = {**item, "kind": item_kind}  # API list responses omit each item's kind
            yield from _flatten(item, where, f"{path}.items[{index}]")
        return
    metadata = document.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        raise InventoryError(f"{where}: {path}.metadata.name is missing in a {kind}")
    yield document


# --- normalising ------------------------------------------------------------------------------


def _meta(obj: Dict[str, Any]) -> Tuple[str, str]:
    metadata = obj.get("metadata") or {}
    return metadata.get("namespace") or "default", metadata["name"]


def _lb_address(obj: Dict[str, Any]) -> Optional[str]:
    for entry in ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        if isinstance(entry, dict) and (entry.get("ip") or entry.get("hostname")):
            return entry.get("ip") or entry.get("hostname")
    return None


def _controller(obj: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    refs = [r for r in (obj.get("metadata") or {}).get("ownerReferences") or [] if isinstance(r, dict)]
    for ref in refs:
        if ref.get("controller"):
            return ref
    return refs[0] if refs else None


class _Index:
    """The objects by kind and (namespace, name), plus each Service's route exposure."""

    def __init__(self, objects: Iterable[Dict[str, Any]]):
        self.by_kind: Dict[str, Dict[Tuple[str, str], Dict[str, Any]]] = defaultdict(dict)
        for obj in objects:
            kind = obj.get("kind")
            if kind in KINDS:
                self.by_kind[kind][_meta(obj)] = obj
        self.services_by_namespace: Dict[str, List[Dict[str, Any]]] = defaultdict(list)
        for (namespace, _), service in self.by_kind["Service"].items():
            if (service.get("spec") or {}).get("selector"):
                self.services_by_namespace[namespace].append(service)
        self.routed: Dict[Tuple[str, str], List[Exposure]] = defaultdict(list)
        self.warnings: List[str] = []
        self._index_ingresses()
        self._index_httproutes()

    def _index_ingresses(self) -> None:
        for (namespace, name), ingress in self.by_kind["Ingress"].items():
            spec = ingress.get("spec") or {}
            backends: Dict[str, List[str]] = defaultdict(list)
            default = ((spec.get("defaultBackend") or {}).get("service") or {}).get("name")
            if default:
                backends[default].append("*")
            for rule in spec.get("rules") or []:
                for path in ((rule or {}).get("http") or {}).get("paths") or []:
                    service = (((path or {}).get("backend") or {}).get("service") or {}).get("name")
                    if service:
                        backends[service].append(rule.get("host") or "*")
            address = _lb_address(ingress)
            for service, hosts in backends.items():
                hosts_text = ", ".join(dict.fromkeys(hosts))
                reason = f"Ingress {namespace}/{name} -> Service {namespace}/{service} (hosts {hosts_text})"
                self.routed[(namespace, service)].append(Exposure(reason=reason, address=address))

    def _index_httproutes(self) -> None:
        for (namespace, name), route in self.by_kind["HTTPRoute"].items():
            spec = route.get("spec") or {}
            hostnames = ", ".join(spec.get("hostnames") or []) or "*"
            gateways = ", ".join(
                f"{ref.get('namespace') or namespace}/{ref.get('name')}"
                for ref in spec.get("parentRefs") or []
                if isinstance(ref, dict)
            )
            seen = set()
            for rule in spec.get("rules") or []:
                for ref in (rule or {}).get("backendRefs") or []:
                    if not isinstance(ref, dict) or (ref.get("kind") or "Service") != "Service":
                        continue
                    if ref.get("group") not in (None, ""):
                        continue
                    target = (ref.get("namespace") or namespace, ref.get("name"))
                    if not target[1] or target in seen:
                        continue
                    seen.add(target)
                    reason = (
                        f"HTTPRoute {namespace}/{name} -> Service {target[0]}/{target[1]} "
                        f"(hostnames {hostnames}; Gateway {gateways or 'unknown'})"
                    )
                    self.routed[target].append(Exposure(reason=reason))

    def exposure(self, namespace: str, labels: Dict[str, str]) -> List[Exposure]:
        found: List[Exposure] = []
        for service in self.services_by_namespace.get(namespace, ()):
            spec = service.get("spec") or {}
            selector = spec.get("selector") or {}
            if any(labels.get(key) != value for key, value in selector.items()):
                continue
            _, name = _meta(service)
            kind = spec.get("type") or "ClusterIP"
            if kind == "LoadBalancer":
                address = _lb_address(service)
                text = f"Service {namespace}/{name} type=LoadBalancer"
                found.append(
                    Exposure(reason=f"{text} {address}" if address else f"{text} (no address yet)", address=address)
                )
            elif kind == "NodePort":
                ports = ",".join(str(p.get("nodePort")) for p in spec.get("ports") or [] if p.get("nodePort"))
                found.append(Exposure(reason=f"Service {namespace}/{name} type=NodePort nodePort={ports or '?'}"))
            if spec.get("externalIPs"):
                ips = ", ".join(spec["externalIPs"])
                found.append(
                    Exposure(reason=f"Service {namespace}/{name} externalIPs {ips}", address=spec["externalIPs"][0])
                )
            found.extend(self.routed.get((namespace, name), ()))
        return found

    def workload(self, pod: Dict[str, Any]) -> Tuple[str, str, Optional[str]]:
        """(kind, name, note) of the workload that owns ``pod``, walking ownerReferences."""
        namespace, pod_name = _meta(pod)
        ref = _controller(pod)
        if ref is None:
            return "Pod", pod_name, None
        kind, name = ref.get("kind") or "Unknown", ref.get("name") or "?"
        if kind == "Node":
            return "Pod", pod_name, f"static pod managed by the kubelet on node {name}"
        if kind == "ReplicaSet":
            replica_set = self.by_kind["ReplicaSet"].get((namespace, name))
            if replica_set is not None:
                owner = _controller(replica_set)
                if owner is not None:
                    return owner.get("kind") or "Unknown", owner.get("name") or "?", None
                return "ReplicaSet", name, None
            template_hash = ((pod.get("metadata") or {}).get("labels") or {}).get("pod-template-hash")
            if template_hash and name.endswith(f"-{template_hash}"):
                return (
                    "Deployment",
                    name[: -len(template_hash) - 1],
                    f"derived from the pod-template-hash convention: ReplicaSet {namespace}/{name} "
                    "was not in the input",
                )
            return "ReplicaSet", name, f"ReplicaSet {namespace}/{name} was not in the input"
        if kind == "Job":
            job = self.by_kind["Job"].get((namespace, name))
            if job is not None:
                owner = _controller(job)
                if owner is not None:
                    return owner.get("kind") or "Unknown", owner.get("name") or "?", None
                return "Job", name, None
            base, _, suffix = name.rpartition("-")
            if base and suffix.isdigit() and len(suffix) >= 8:
                return (
                    "CronJob",
                    base,
                    f"derived from the CronJob job-name convention: Job {namespace}/{name} "
                    "was not in the input",
                )
            return "Job", name, f"Job {namespace}/{name} was not in the input"
        return kind, name, None


def _containers(pod: Dict[str, Any]) -> Iterable[Tuple[str, Dict[str, Any], Optional[Dict[str, Any]]]]:
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}

    def statuses(key: str) -> Dict[str, Dict[str, Any]]:
        return {s.get("name"): s for s in status.get(key) or [] if isinstance(s, dict)}

    main = statuses("containerStatuses")
    init = statuses("initContainerStatuses")
    ephemeral = statuses("ephemeralContainerStatuses")
    for container in spec.get("initContainers") or []:
        kind = "sidecar" if container.get("restartPolicy") == "Always" else "init"
        yield kind, container, init.get(container.get("name"))
    for container in spec.get("containers") or []:
        yield "container", container, main.get(container.get("name"))
    for container in spec.get("ephemeralContainers") or []:
        yield "ephemeral", container, ephemeral.get(container.get("name"))


def normalize(
    objects: Iterable[Dict[str, Any]], cluster: str, source: str, collected_at: Optional[str] = None
) -> Inventory:
    """The inventory of ``cluster`` from its objects (pods not in the input are not running)."""
    with paused_gc():
        return _normalize(objects, cluster, source, collected_at)


def _normalize(
    objects: Iterable[Dict[str, Any]], cluster: str, source: str, collected_at: Optional[str]
) -> Inventory:
    index = _Index(objects)
    records: List[ContainerRecord] = []
    pods = 0
    finished = 0
    for (namespace, pod_name), pod in sorted(index.by_kind["Pod"].items()):
        phase = (pod.get("status") or {}).get("phase")
        if phase in _DONE_PHASES:
            finished += 1
            continue
        pods += 1
        labels = (pod.get("metadata") or {}).get("labels") or {}
        exposure = index.exposure(namespace, labels)
        kind, name, note = index.workload(pod)
        for container_kind, container, status in _containers(pod):
            image = (container.get("image") or (status or {}).get("image") or "").strip()
            digest, error = running_digest((status or {}).get("imageID"), image)
            records.append(
                ContainerRecord(
                    namespace=namespace,
                    pod=pod_name,
                    workload_kind=kind,
                    workload_name=name,
                    container=container.get("name") or "?",
                    container_kind=container_kind,
                    image=image or "?",
                    digest=digest,
                    digest_error=error,
                    exposure=list(exposure),
                    owner_note=note,
                )
            )
    warnings = list(index.warnings)
    if finished:
        warnings.append(f"{finished} pod(s) in phase Succeeded/Failed are not running and were left out")
    return Inventory(
        cluster=cluster,
        source=source,
        collected_at=collected_at,
        pods=pods,
        containers=records,
        warnings=warnings,
    )
