"""Request body limits: the one table of how many bytes each route reads, enforced on the stream.

``BodyLimitMiddleware`` is pure ASGI and sits in front of everything else (routing, body
parsing, authentication): a request whose Content-Length is over its route's limit is answered
413 before a byte of the body is read, and a body streamed without a length is counted as it
arrives and refused the moment it passes the limit. Nothing is buffered here, so an anonymous
client cannot make the server hold more than the limit of the route it calls.

Starlette's own ``max_body_size`` is not used: it checks a declared length only when the route
first reads the body, i.e. after authentication dependencies have run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, List, MutableMapping, Optional, Pattern, Tuple

from starlette.exceptions import HTTPException

from imagetrail.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

KIB = 1024
MIB = 1024 * KIB
MAX_INVENTORY_BYTES = 256 * MIB  # a 50,000-pod cluster is about 40 MB of JSON
MAX_CLUSTER_CHANGES_BYTES = 64 * MIB  # the watch sends changed pods every few seconds
MAX_SCAN_BYTES = 64 * MIB
MAX_RELATIONS_BYTES = 4 * MIB  # 10,000 relations of ~300 bytes
MAX_FORM_BYTES = 256 * KIB  # web forms: a remediation form lists up to a few thousand digests
MAX_LOGIN_BYTES = 16 * KIB
MAX_SMALL_JSON_BYTES = 64 * KIB  # JSON bodies of a few fields (remediation requests)
# Every route not in the table (GETs, unknown paths): enough for any sane body, nothing more.
DEFAULT_BODY_BYTES = 16 * KIB


def body_limits(settings: Settings) -> Dict[Tuple[str, str], Tuple[int, str]]:
    """(method, path template) -> (most bytes the body may have, what to tell a refused client)."""
    return {
        ("POST", "/v1/reports"): (settings.max_report_bytes, "IMAGETRAIL_MAX_REPORT_BYTES"),
        ("POST", "/v1/clusters/{cluster}/inventory"): (MAX_INVENTORY_BYTES, "split the inventory"),
        ("POST", "/v1/clusters/{cluster}/changes"): (MAX_CLUSTER_CHANGES_BYTES, "send fewer changed pods per request"),
        ("POST", "/v1/scans"): (MAX_SCAN_BYTES, "send one scan report per request"),
        ("POST", "/v1/image-relations"): (MAX_RELATIONS_BYTES, "send at most 10,000 relations per request"),
        ("POST", "/v1/remediations"): (MAX_SMALL_JSON_BYTES, "a remediation request is a few filters"),
        ("POST", "/v1/owners/resolve"): (MAX_SMALL_JSON_BYTES, "an owners request is a few filters"),
        ("POST", "/v1/registry-events"): (settings.max_registry_event_bytes, "IMAGETRAIL_MAX_REGISTRY_EVENT_BYTES"),
        ("POST", "/login"): (MAX_LOGIN_BYTES, "the sign-in form holds one key"),
        ("POST", "/login/sso"): (MAX_LOGIN_BYTES, "the sign-in form holds one token"),
        ("POST", "/logout"): (MAX_LOGIN_BYTES, "the sign-out form holds one token"),
        ("POST", "/remediations"): (MAX_FORM_BYTES, "select fewer images"),
    }


class BodyTooLarge(HTTPException):
    """413, raised from ``receive`` so FastAPI's body readers pass it on unchanged."""

    def __init__(self, detail: str):
        # The rest of the body is never read, so the connection cannot carry another request.
        super().__init__(status_code=413, detail=detail, headers={"Connection": "close"})


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: Pattern[str]
    limit: int
    hint: str
    template: str


def _compile(template: str) -> Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("^" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.routes: List[_Route] = [
            _Route(method, _compile(template), limit, hint, template)
            for (method, template), (limit, hint) in body_limits(settings).items()
        ]

    def limit_for(self, method: str, path: str) -> Tuple[int, str, str]:
        for route in self.routes:
            if route.method == method and route.pattern.match(path):
                return route.limit, route.hint, f"{method} {route.template}"
        return DEFAULT_BODY_BYTES, "this route takes no large body", f"{method} {path[:100]}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if b"%00" in scope.get("query_string", b""):
            # PostgreSQL text cannot hold NUL: refused here once rather than as a driver error per query
            await _refuse(send, "query parameters cannot contain NUL (%00) characters", status=422)
            return
        limit, hint, route = self.limit_for(scope["method"], scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, f"the request body is {declared} bytes; {route} takes at most {limit} ({hint})")
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(f"the request body exceeds {limit} bytes, the most {route} takes ({hint})")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:  # read outside a route (no exception handler on the way)
            if started:
                raise
            await _refuse(send, str(exc.detail))


def _content_length(scope: Scope) -> Optional[int]:
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _refuse(send: Send, detail: str, status: int = 413) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
