"""A local Kubernetes API server stand-in for the list endpoints ``imagetrail k8s sync`` calls.

Serves cluster-wide lists (``/api/v1/pods`` ...) in pages and CHECKS each request: a GET, the
kubeconfig's bearer token, a ``limit`` on every list, and only ``continue`` tokens it issued.
Resources it does not hold answer 404 like an API server without that CRD.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List
from urllib.parse import parse_qs, urlsplit

PATHS = {
    "/api/v1/pods": "Pod",
    "/api/v1/services": "Service",
    "/apis/networking.k8s.io/v1/ingresses": "Ingress",
    "/apis/apps/v1/replicasets": "ReplicaSet",
    "/apis/batch/v1/jobs": "Job",
    "/apis/gateway.networking.k8s.io/v1/httproutes": "HTTPRoute",
}
TOKEN = "kube-test-token"


class KubeApiServer:
    def __init__(self, objects: List[dict], with_gateway_api: bool = True):
        self.by_kind: Dict[str, List[dict]] = {kind: [] for kind in PATHS.values()}
        for obj in objects:
            item = {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}  # list items omit kind
            self.by_kind[obj["kind"]].append(item)
        self.with_gateway_api = with_gateway_api
        self.requests: List[str] = []
        self.errors: List[str] = []
        self._issued = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

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
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
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
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    server.errors.append(f"{self.path}: no bearer token")
                    return self._send(401, {"kind": "Status", "code": 401})
                kind = PATHS.get(parts.path)
                if kind is None or (kind == "HTTPRoute" and not server.with_gateway_api):
                    return self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                if "limit" not in query:
                    server.errors.append(f"{self.path}: list without limit")
                limit = int(query.get("limit", ["500"])[0])
                token = query.get("continue", [None])[0]
                if token is not None and token not in server._issued:
                    server.errors.append(f"{self.path}: continue token it never issued")
                    return self._send(410, {"kind": "Status", "code": 410, "reason": "Expired"})
                start = int(token.split(":")[1]) if token else 0
                items = server.by_kind[kind][start : start + limit]
                metadata = {"resourceVersion": "1"}
                if start + limit < len(server.by_kind[kind]):
                    metadata["continue"] = f"{kind}:{start + limit}"
                    server._issued.add(metadata["continue"])
                self._send(
                    200, {"kind": f"{kind}List", "apiVersion": "v1", "metadata": metadata, "items": items}
                )

        return Handler
