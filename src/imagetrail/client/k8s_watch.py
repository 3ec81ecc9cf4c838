"""Keep a cluster's view current: list every kind, then watch it, and send what changed.

One thread per kind lists (page by page) and then watches from the list's ``resourceVersion`` with
bookmarks, so a quiet kind still advances its version. A dropped connection resumes from the last
version seen; ``410 Gone`` (the version fell out of the API server's window) relists that kind.
The main loop folds the events into its copy of the objects every ``flush_seconds``, normalises
the namespaces they touched (exposure depends on Services, Ingresses and HTTPRoutes, not only on
the pod; a relist normalises everything), and sends the pods whose containers differ from what
the backend last acknowledged. A send that
fails is simply retried at the next flush: nothing is acknowledged until the backend says so, and
a pod is always sent whole, so nothing is lost or counted twice. Every ``resync_seconds`` the
watches restart from a fresh list and the backend gets the full inventory.

Trivy Operator VulnerabilityReports and ClusterVulnerabilityReports are watched the same way and
sent as scans; a report without ``report.artifact.digest`` (older operators) gets the digest of
the running container its labels name.
"""

from __future__ import annotations

import copy
import json
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Protocol, Set, Tuple

from imagetrail.client.k8s_live import GATEWAY_GROUP, ClusterAccessError, core_lists, custom_list, list_all
from imagetrail.inventory import MAX_CHANGED_PODS, Changes, Container, Inventory, PodContainers, PodRef
from imagetrail.parsers.k8s_inventory import normalize
from imagetrail.reference import running_digest

log = logging.getLogger("imagetrail.k8s.watch")

TRIVY_GROUP = "aquasecurity.github.io"
TRIVY_VERSION = "v1alpha1"
REPORT_KINDS = {"VulnerabilityReport": "vulnerabilityreports",
                "ClusterVulnerabilityReport": "clustervulnerabilityreports"}
MAX_PODS_PER_REQUEST = min(1000, MAX_CHANGED_PODS)  # changed (and removed) pods per changes request
MAX_REPORTS_PER_REQUEST = 100

PodKey = Tuple[str, str]
ObjectKey = Tuple[str, str]


@dataclass
class WatchOptions:
    page_size: int = 500
    flush_seconds: float = 2.0  # events are batched this long before the backend hears of them
    resync_seconds: float = 3600.0  # full relist and full inventory this often
    watch_timeout_seconds: int = 300  # the API server ends each watch after this; it is resumed
    max_backoff_seconds: float = 30.0
    allow_empty: bool = False


class Sink(Protocol):
    """Where the cluster's state goes (the backend API; a test may record it)."""

    def replace(self, inventory: Inventory, allow_empty: bool) -> None: ...

    def changes(self, cluster: str, pods: Dict[PodKey, List[Container]], removed: List[PodKey]) -> None: ...

    def scans(self, cluster: str, reports: List[dict]) -> None: ...


class _Gone(Exception):
    """The watch's resourceVersion is too old: list again."""


@dataclass
class _Event:
    generation: int
    kind: str
    type: str  # ADDED | MODIFIED | DELETED | LISTED (a whole list of the kind)
    obj: Any


@dataclass
class WatchStats:
    """What happened, for the log line and for tests."""

    full_syncs: int = 0
    change_batches: int = 0
    relists: int = 0
    reconnects: int = 0
    scans_sent: int = 0
    errors: Deque[str] = field(default_factory=lambda: deque(maxlen=100))  # the latest; a long outage is bounded


def _key(obj: Dict[str, Any]) -> ObjectKey:
    metadata = obj.get("metadata") or {}
    return metadata.get("namespace") or "", metadata.get("name") or ""


def _touched_namespaces(obj: Optional[Dict[str, Any]]) -> Set[str]:
    """Namespaces whose pods an object can change: its own, and those an HTTPRoute sends traffic to."""
    if obj is None:
        return set()
    namespace = (obj.get("metadata") or {}).get("namespace") or "default"
    found = {namespace}
    if obj.get("kind") == "HTTPRoute":
        for rule in (obj.get("spec") or {}).get("rules") or []:
            for ref in (rule or {}).get("backendRefs") or []:
                if isinstance(ref, dict):
                    found.add(ref.get("namespace") or namespace)
    return found


class _KindWatcher(threading.Thread):
    """Watches one kind from a resourceVersion; relists it on 410; reconnects on a dropped stream."""

    def __init__(self, owner: "ClusterWatch", kind: str, call: Callable[..., Any], version: str,
                 generation: int):
        super().__init__(name=f"watch-{kind}", daemon=True)
        self.owner, self.kind, self.call = owner, kind, call
        self.version, self.generation = version, generation
        self.stopped = threading.Event()

    def run(self) -> None:
        backoff = 0.5
        while not self.stopped.is_set() and not self.owner.stopping.is_set():
            try:
                self._watch()
                backoff = 0.5  # the server ended the watch at its timeout: resume at once
            except _Gone:
                self.owner.stats.relists += 1
                try:
                    items, self.version = list_all(self.call, self.kind, self.owner.options.page_size)
                except Exception as exc:  # noqa: BLE001 - retried below
                    self._pause(f"relisting {self.kind} failed: {exc}", backoff)
                    backoff = min(backoff * 2, self.owner.options.max_backoff_seconds)
                    continue
                self.owner.events.put(_Event(self.generation, self.kind, "LISTED", items))
            except Exception as exc:  # noqa: BLE001 - a dropped connection, a proxy's 5xx, ...
                self.owner.stats.reconnects += 1
                self._pause(f"watch of {self.kind} interrupted ({type(exc).__name__}: {exc}); resuming", backoff)
                backoff = min(backoff * 2, self.owner.options.max_backoff_seconds)

    def _pause(self, message: str, seconds: float) -> None:
        log.warning("%s", message)
        self.owner.stats.errors.append(message)
        self.owner.stopping.wait(seconds)

    def _watch(self) -> None:
        # The client's Watch helper builds model objects and loses an ERROR event's status when asked
        # not to; reading the stream here keeps plain dicts and sees 410 however it arrives.
        from kubernetes.client.exceptions import ApiException
        from kubernetes.watch.watch import iter_resp_lines

        try:
            timeout = self.owner.options.watch_timeout_seconds
            # The server ends the watch after ``timeout``; a read still waiting well past that is a dead
            # connection (a silent partition sends no FIN), so it is abandoned and resumed.
            response = self.call(watch=True, resource_version=self.version, allow_watch_bookmarks=True,
                                 timeout_seconds=timeout, _preload_content=False,
                                 _request_timeout=(10, timeout + 30))
        except ApiException as exc:
            if exc.status == 410:
                raise _Gone() from None
            raise
        try:
            for line in iter_resp_lines(response):
                if self.stopped.is_set():
                    return
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone()
                    raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if version:
                    self.version = version
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    obj.setdefault("kind", self.kind)
                    self.owner.events.put(_Event(self.generation, self.kind, kind, obj))
        finally:
            response.close()
            response.release_conn()


class ClusterWatch:
    """List, watch and send one cluster until ``stop()``."""

    def __init__(self, api, cluster: str, sink: Sink, options: Optional[WatchOptions] = None):
        self.api, self.cluster, self.sink = api, cluster, sink
        self.options = options or WatchOptions()
        self.events: "queue.Queue[_Event]" = queue.Queue()
        self.stopping = threading.Event()
        self.stats = WatchStats()
        self.objects: Dict[str, Dict[ObjectKey, dict]] = {}
        self.reports: Dict[str, Dict[ObjectKey, dict]] = {}
        self._sent_pods: Dict[PodKey, List[Container]] = {}
        self._sent_reports: Dict[Tuple[str, ObjectKey], str] = {}  # -> resourceVersion acknowledged
        self._watchers: List[_KindWatcher] = []
        self._generation = 0
        self._calls: Optional[List[Tuple[Callable[..., Any], str]]] = None

    def stop(self) -> None:
        self.stopping.set()
        for watcher in self._watchers:
            watcher.stopped.set()

    # --- the kinds -------------------------------------------------------------------------------

    def _discover(self) -> List[Tuple[Callable[..., Any], str]]:
        """Built-in kinds always; HTTPRoutes and Trivy Operator reports where their CRDs exist."""
        from kubernetes.client.exceptions import ApiException

        calls = list(core_lists(self.api))
        optional = [(custom_list(self.api, GATEWAY_GROUP, v, "httproutes"), "HTTPRoute") for v in ("v1", "v1beta1")]
        optional += [(custom_list(self.api, TRIVY_GROUP, TRIVY_VERSION, plural), kind)
                     for kind, plural in REPORT_KINDS.items()]
        for call, kind in optional:
            if any(k == kind for _, k in calls):
                continue  # HTTPRoute v1 found: v1beta1 not needed
            try:
                probe = call(limit=1, _preload_content=False)
                probe.read()  # drained, so the pooled connection can carry the next request
                probe.release_conn()
            except ApiException as exc:
                if exc.status == 404:
                    continue  # the CRD (this version) is not installed
                raise ClusterAccessError(f"listing {kind} failed: HTTP {exc.status} {exc.reason}") from None
            calls.append((call, kind))
        return calls

    # --- full sync -------------------------------------------------------------------------------

    def full_sync(self) -> None:
        """Relist every kind, restart the watches from the new versions, send the whole inventory."""
        for watcher in self._watchers:
            watcher.stopped.set()  # its events carry an old generation and are ignored from now on
        self._generation += 1
        if self._calls is None:
            self._calls = self._discover()
        listed: Dict[str, Tuple[List[dict], str]] = {}
        for call, kind in self._calls:
            listed[kind] = list_all(call, kind, self.options.page_size)
        for kind, (items, _) in listed.items():
            self._store_list(kind, items)
        inventory = self._inventory()
        self.sink.replace(inventory, self.options.allow_empty)
        self._sent_pods = self._by_pod(inventory)
        self.stats.full_syncs += 1
        log.info("cluster %s: full sync, %d containers in %d pods", self.cluster, len(inventory.containers),
                 inventory.pods)
        self._send_reports()
        self._watchers = [
            _KindWatcher(self, kind, call, listed[kind][1], self._generation) for call, kind in self._calls
        ]
        for watcher in self._watchers:
            watcher.start()

    def _store_list(self, kind: str, items: List[dict]) -> None:
        target = self.reports if kind in REPORT_KINDS else self.objects
        target[kind] = {_key(item): item for item in items}

    def _inventory(self, namespaces: Optional[Set[str]] = None) -> Inventory:
        """The normalised view; with ``namespaces``, only of their pods (HTTPRoutes are always kept:
        one may route to a Service of another namespace)."""
        objects = [obj for kind, by_key in self.objects.items() for (namespace, _), obj in by_key.items()
                   if namespaces is None or (namespace or "default") in namespaces or kind == "HTTPRoute"]
        return normalize(objects, self.cluster, "live", datetime.now(timezone.utc).isoformat())

    @staticmethod
    def _by_pod(inventory: Inventory) -> Dict[PodKey, List[Container]]:
        pods: Dict[PodKey, List[Container]] = {}
        for container in inventory.containers:
            pods.setdefault((container.namespace, container.pod), []).append(container)
        return pods

    # --- the loop --------------------------------------------------------------------------------

    def run(self) -> WatchStats:
        """Run until ``stop()``; raises ClusterAccessError when the first list fails."""
        self.full_sync()
        next_resync = time.monotonic() + self.options.resync_seconds
        backoff = 0.5
        while not self.stopping.is_set():
            changed, namespaces = self._drain(self.options.flush_seconds)
            try:
                if time.monotonic() >= next_resync:
                    self.full_sync()
                    next_resync = time.monotonic() + self.options.resync_seconds
                elif changed:
                    self.flush(namespaces)
                backoff = 0.5
            except Exception as exc:  # noqa: BLE001 - the backend or the API server is away: retry
                message = f"sync of cluster {self.cluster} failed ({exc}); retrying"
                log.warning("%s", message)
                self.stats.errors.append(message)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, self.options.max_backoff_seconds)
                self.events.put(_Event(self._generation, "", "RETRY", None))
        for watcher in self._watchers:
            watcher.stopped.set()
        return self.stats

    def _drain(self, seconds: float) -> Tuple[bool, Optional[Set[str]]]:
        """Fold the events of the next ``seconds`` into the objects.

        Returns whether any arrived and the namespaces they can change (None: possibly all, after a
        relist or a failed send), so a flush normalises only those namespaces' pods.
        """
        deadline = time.monotonic() + seconds
        changed = False
        namespaces: Optional[Set[str]] = set()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.stopping.is_set():
                return changed, namespaces
            try:
                event = self.events.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if event.generation != self._generation:
                continue  # from a watch a full sync replaced
            changed = True
            if event.type in ("RETRY", "LISTED"):
                namespaces = None
                if event.type == "LISTED":
                    self._store_list(event.kind, event.obj)
                continue
            target = (self.reports if event.kind in REPORT_KINDS else self.objects).setdefault(event.kind, {})
            key = _key(event.obj)
            if namespaces is not None:
                namespaces.update(_touched_namespaces(target.get(key)))
                namespaces.update(_touched_namespaces(event.obj))
            if event.type == "DELETED":
                target.pop(key, None)
            else:
                target[key] = event.obj

    def flush(self, namespaces: Optional[Set[str]] = None) -> None:
        """Send the pods (of ``namespaces``, or all) that differ from what the backend acknowledged,
        then new vulnerability reports."""
        current = self._by_pod(self._inventory(namespaces))
        changed = {key: containers for key, containers in current.items() if self._sent_pods.get(key) != containers}
        removed = sorted(key for key in self._sent_pods
                         if (namespaces is None or key[0] in namespaces) and key not in current)
        keys = sorted(changed)
        for start in range(0, max(len(keys), len(removed)), MAX_PODS_PER_REQUEST):
            batch = {key: changed[key] for key in keys[start : start + MAX_PODS_PER_REQUEST]}
            gone = removed[start : start + MAX_PODS_PER_REQUEST]
            self.sink.changes(self.cluster, batch, gone)
            self._sent_pods.update(batch)  # acknowledged: only now is it the backend's state
            for key in gone:
                self._sent_pods.pop(key, None)
            self.stats.change_batches += 1
            log.info("cluster %s: sent %d changed and %d removed pod(s)", self.cluster, len(batch), len(gone))
        self._send_reports()

    # --- vulnerability reports -------------------------------------------------------------------

    def _send_reports(self) -> None:
        pending: List[Tuple[Tuple[str, ObjectKey], str, dict]] = []
        for kind, reports in self.reports.items():
            for key, report in reports.items():
                version = str((report.get("metadata") or {}).get("resourceVersion") or "")
                if self._sent_reports.get((kind, key)) == version:
                    continue
                resolved = self._with_digest(report)
                if resolved is not None:
                    pending.append(((kind, key), version, resolved))
        for start in range(0, len(pending), MAX_REPORTS_PER_REQUEST):
            batch = pending[start : start + MAX_REPORTS_PER_REQUEST]
            self.sink.scans(self.cluster, [report for _, _, report in batch])
            for ident, version, _ in batch:
                self._sent_reports[ident] = version
            self.stats.scans_sent += len(batch)

    def _with_digest(self, report: dict) -> Optional[dict]:
        """The report with ``report.artifact.digest``, from the running container its labels name if needed.

        None while no running container tells which digest it is (it is tried again at the next flush).
        """
        artifact = ((report.get("report") or {}).get("artifact")) or {}
        if artifact.get("digest"):
            return report
        metadata = report.get("metadata") or {}
        labels = metadata.get("labels") or {}
        # A namespaced report names a workload of its own namespace only: whoever may write reports in one
        # namespace must not attach findings to another's images through a label.
        namespace = metadata.get("namespace") or labels.get("trivy-operator.resource.namespace")
        digests = set(self._running_digests(
            labels.get("trivy-operator.resource.kind"),
            labels.get("trivy-operator.resource.name"),
            namespace,
            labels.get("trivy-operator.container.name"),
        ))
        if len(digests) != 1:
            return None  # unknown, or pods of one workload run different digests: not attributable
        resolved = copy.deepcopy(report)
        resolved.setdefault("report", {}).setdefault("artifact", {})["digest"] = digests.pop()
        return resolved

    def _running_digests(self, kind: Optional[str], name: Optional[str], namespace: Optional[str],
                         container: Optional[str]) -> Iterable[str]:
        if not (kind and name and container):
            return
        for (pod_namespace, pod_name), pod in self.objects.get("Pod", {}).items():
            if namespace and pod_namespace != namespace:
                continue
            owners = [(r.get("kind"), r.get("name")) for r in (pod.get("metadata") or {}).get("ownerReferences") or []]
            if (kind, name) not in owners and not (kind == "Pod" and name == pod_name):
                continue
            status = pod.get("status") or {}
            for entry in [*(status.get("containerStatuses") or []), *(status.get("initContainerStatuses") or [])]:
                if entry.get("name") == container:
                    digest, _ = running_digest(entry.get("imageID"), entry.get("image") or "")
                    if digest:
                        yield digest


class ApiSink:
    """Sends to the ImageTrail backend through the CLI's API client."""

    def __init__(self, client):
        self.client = client

    def replace(self, inventory: Inventory, allow_empty: bool) -> None:
        inventory.allow_empty = allow_empty
        self.client.request("POST", f"/v1/clusters/{inventory.cluster}/inventory", data=inventory.to_json(),
                            headers={"Content-Type": "application/json"})

    def changes(self, cluster: str, pods: Dict[PodKey, List[Container]], removed: List[PodKey]) -> None:
        body = Changes(
            cluster=cluster,
            collected_at=datetime.now(timezone.utc),
            pods=[PodContainers(namespace=ns, pod=pod, containers=containers)
                  for (ns, pod), containers in sorted(pods.items())],
            removed=[PodRef(namespace=ns, pod=pod) for ns, pod in removed],
        )
        self.client.request("POST", f"/v1/clusters/{cluster}/changes", data=body.to_json(),
                            headers={"Content-Type": "application/json"})

    def scans(self, cluster: str, reports: List[dict]) -> None:
        body = {"apiVersion": "v1", "kind": "List", "items": reports}
        self.client.request("POST", "/v1/scans", params={"file_name": f"trivy-operator/{cluster}"},
                            data=json.dumps(body), headers={"Content-Type": "application/json"})


__all__ = ["ApiSink", "ClusterWatch", "Sink", "WatchOptions", "WatchStats"]
