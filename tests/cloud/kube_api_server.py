"""A local Kubernetes API server stand-in for the list and watch calls ``imagetrail k8s sync`` makes.

Lists: cluster-wide (``/api/v1/pods`` ...) in pages, following the API concepts document
(https://kubernetes.io/docs/reference/using-api/api-concepts/): ``limit``/``continue`` paging and a
``metadata.resourceVersion`` on every list. Watches (``?watch=true``): a chunked stream of
newline-delimited JSON events after the requested ``resourceVersion``, ``BOOKMARK`` events when
``allowWatchBookmarks`` is set, the stream ended at ``timeoutSeconds``, and an ``ERROR`` event with a
410 ``Status`` when the version is older than the server's compacted history.

It CHECKS each request and records what is wrong in ``errors``: a GET, the kubeconfig's bearer token,
a ``limit`` on every list, only ``continue`` tokens it issued, and on a watch a ``resourceVersion``
(never a watch from "now", which could miss changes), bookmarks asked for and a timeout set.
Resources it does not hold answer 404 like an API server without that CRD.

Tests change the cluster with ``add`` / ``modify`` / ``delete``, and break it with ``pause`` (hold
every event), ``compact`` (forget history: old versions get 410) and ``drop_watches`` (cut every
open watch connection mid-stream).
"""

from __future__ import annotations

import copy
import datetime
import ipaddress
import json
import socket
import ssl
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

PATHS = {
    "/api/v1/pods": "Pod",
    "/api/v1/services": "Service",
    "/apis/networking.k8s.io/v1/ingresses": "Ingress",
    "/apis/apps/v1/replicasets": "ReplicaSet",
    "/apis/batch/v1/jobs": "Job",
    "/apis/gateway.networking.k8s.io/v1/httproutes": "HTTPRoute",
    "/apis/aquasecurity.github.io/v1alpha1/vulnerabilityreports": "VulnerabilityReport",
    "/apis/aquasecurity.github.io/v1alpha1/clustervulnerabilityreports": "ClusterVulnerabilityReport",
}
TRIVY_KINDS = ("VulnerabilityReport", "ClusterVulnerabilityReport")
TOKEN = "kube-test-token"
TRUE = ("true", "True", "1")


def _tls_context() -> Tuple[str, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1, as a cluster's CA-signed serving certificate stands in."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver-stand-in")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "tls.crt").write_text(cert_pem)
        (Path(directory) / "tls.key").write_text(key_pem)
        context.load_cert_chain(str(Path(directory) / "tls.crt"), str(Path(directory) / "tls.key"))
    return cert_pem, context


def _key(obj: dict) -> Tuple[str, str]:
    return obj["metadata"].get("namespace") or "", obj["metadata"]["name"]


class KubeApiServer:
    def __init__(self, objects: List[dict], with_gateway_api: bool = True, with_trivy_operator: bool = False,
                 bookmark_seconds: float = 0.2, max_watch_seconds: float = 30.0, tls: bool = False):
        self.with_gateway_api = with_gateway_api
        self.with_trivy_operator = with_trivy_operator
        self.bookmark_seconds = bookmark_seconds
        self.max_watch_seconds = max_watch_seconds
        self.requests: List[str] = []
        self.errors: List[str] = []
        self._issued = set()
        self._lock = threading.Condition()
        self._version = 1
        self._compacted = 0  # watches from a version below this get 410
        self._paused = False
        self._history: List[Tuple[int, str, str, dict]] = []  # (version, kind, type, object)
        self._watch_sockets: List[socket.socket] = []
        self.by_kind: Dict[str, Dict[Tuple[str, str], dict]] = {kind: {} for kind in PATHS.values()}
        for obj in objects:
            self._store(obj)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.ca_pem = ""  # with tls: the server's self-signed certificate, the pod's ca.crt
        if tls:
            self.ca_pem, context = _tls_context()
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    # --- the cluster, as tests change it ------------------------------------------------------------

    def _store(self, obj: dict) -> dict:
        item = copy.deepcopy(obj)
        item.setdefault("metadata", {})["resourceVersion"] = str(self._version)
        self.by_kind[item["kind"]][_key(item)] = item
        return item

    def _record(self, kind: str, type_: str, obj: dict) -> None:
        with self._lock:
            self._version += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self._version)
            if type_ == "DELETED":
                self.by_kind[kind].pop(_key(obj), None)
            else:
                self.by_kind[kind][_key(obj)] = obj
            self._history.append((self._version, kind, type_, obj))
            self._lock.notify_all()

    def add(self, obj: dict) -> None:
        self._record(obj["kind"], "ADDED", obj)

    def modify(self, obj: dict) -> None:
        self._record(obj["kind"], "MODIFIED", obj)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self._record(kind, "DELETED", self.by_kind[kind][(namespace, name)])

    def pause(self, paused: bool = True) -> None:
        """Hold every watch event (bookmarks too), as a slow or partitioned API server would."""
        with self._lock:
            self._paused = paused
            self._lock.notify_all()

    def compact(self) -> None:
        """Forget the history: a watch from any version seen so far now gets 410 Gone."""
        with self._lock:
            self._compacted = self._version + 1
            self._history.clear()

    def drop_watches(self) -> int:
        """Cut every open watch connection mid-stream; returns how many were cut."""
        with self._lock:
            sockets, self._watch_sockets = self._watch_sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return len(sockets)

    def watch_requests(self, path: str) -> List[Dict[str, List[str]]]:
        found = []
        for request in self.requests:
            parts = urlsplit(request)
            query = parse_qs(parts.query)
            if parts.path == path and query.get("watch", [""])[0] in TRUE:
                found.append(query)
        return found

    # --- serving ------------------------------------------------------------------------------------

    def kubeconfig(self) -> str:
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "test",
                "clusters": [{"name": "test", "cluster": {"server": self.url}}],
                "users": [{"name": "test", "user": {"token": TOKEN}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
            }
        )

    def __enter__(self):
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.drop_watches()
        self._server.shutdown()
        self._server.server_close()

    def _served(self, kind: Optional[str]) -> bool:
        if kind is None:
            return False
        if kind == "HTTPRoute":
            return self.with_gateway_api
        if kind in TRIVY_KINDS:
            return self.with_trivy_operator
        return True

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # chunked watch streams

            def log_message(self, *args):
                pass

            def _send(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                server.requests.append(self.path)
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
                if scheme.lower() != "bearer" or token != TOKEN:  # the scheme is case-insensitive
                    server.errors.append(f"{self.path}: no bearer token")
                    return self._send(401, {"kind": "Status", "code": 401})
                kind = PATHS.get(parts.path)
                if not server._served(kind):
                    return self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                if query.get("watch", [""])[0] in TRUE:
                    return self._watch(kind, query)
                return self._list(kind, query)

            def _list(self, kind, query):
                if "limit" not in query:
                    server.errors.append(f"{self.path}: list without limit")
                limit = int(query.get("limit", ["500"])[0])
                token = query.get("continue", [None])[0]
                if token is not None and token not in server._issued:
                    server.errors.append(f"{self.path}: continue token it never issued")
                    return self._send(410, {"kind": "Status", "code": 410, "reason": "Expired"})
                with server._lock:
                    version, start = str(server._version), int(token.split(":")[1]) if token else 0
                    # list items omit kind and apiVersion, as the API server's do
                    everything = [
                        {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
                        for _, obj in sorted(server.by_kind[kind].items())
                    ]
                items = everything[start : start + limit]
                metadata = {"resourceVersion": version}
                if start + limit < len(everything):
                    metadata["continue"] = f"{kind}:{start + limit}"
                    server._issued.add(metadata["continue"])
                self._send(200, {"kind": f"{kind}List", "apiVersion": "v1", "metadata": metadata, "items": items})

            def _chunk(self, event: dict) -> None:
                data = json.dumps(event).encode() + b"\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _watch(self, kind, query):
                requested = query.get("resourceVersion", [""])[0]
                if not requested or requested == "0":
                    server.errors.append(f"{self.path}: watch without a resourceVersion from a list")
                if query.get("allowWatchBookmarks", [""])[0] not in TRUE:
                    server.errors.append(f"{self.path}: watch without allowWatchBookmarks")
                if "timeoutSeconds" not in query:
                    server.errors.append(f"{self.path}: watch without timeoutSeconds")
                timeout = min(float(query.get("timeoutSeconds", ["30"])[0]), server.max_watch_seconds)
                since = int(requested or 0)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                with server._lock:
                    server._watch_sockets.append(self.connection)
                    gone = since < server._compacted
                if gone:  # as the API server does: 200, then one ERROR event with a 410 Status
                    self._chunk({"type": "ERROR", "object": {
                        "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                        "reason": "Expired", "message": f"too old resource version: {since}"}})
                    return self._end()
                deadline = time.monotonic() + timeout
                last_bookmark = time.monotonic()
                try:
                    while time.monotonic() < deadline:
                        with server._lock:
                            # read together: a bookmark names a version whose events were all sent
                            paused, current = server._paused, server._version
                            pending = [] if paused else [
                                (v, t, o) for v, k, t, o in server._history if k == kind and v > since
                            ]
                            if not pending:
                                server._lock.wait(0.05)
                        for version, type_, obj in pending:
                            self._chunk({"type": type_, "object": obj})
                            since = version
                        if pending:
                            continue
                        if (not paused and query.get("allowWatchBookmarks", [""])[0] in TRUE
                                and time.monotonic() - last_bookmark >= server.bookmark_seconds):
                            self._chunk({"type": "BOOKMARK", "object": {
                                "kind": kind, "apiVersion": "v1",
                                "metadata": {"resourceVersion": str(current)}}})
                            since = max(since, current)
                            last_bookmark = time.monotonic()
                    self._end()
                except OSError:
                    pass  # dropped by drop_watches() or by the client
                finally:
                    with server._lock:
                        if self.connection in server._watch_sockets:
                            server._watch_sockets.remove(self.connection)
                    self.close_connection = True

            def _end(self):
                try:
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:
                    pass
                self.close_connection = True

        return Handler
