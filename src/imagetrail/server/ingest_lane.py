"""``POST /v1/reports`` straight to its route, past FastAPI's router and telemetry checks.

Every agent job of an organisation posts a report, so this one route carries almost all of
the server's requests. Measured in-process (a writer that answers at once): 84 us of Python a
request through the whole app, 57 us through this lane. The router alone took 25 us: FastAPI
matches the path against every included router before it reaches the route, and checks the
OpenTelemetry providers on each request.

The lane keeps what the answer depends on, and in the same order as the app's own stack:
- ``ServerErrorMiddleware`` (an unexpected error is a 500);
- the app's own middleware, ``BodyLimitMiddleware`` (413 before a byte is read);
- ``ExceptionMiddleware`` with the app's handlers (HTTPException, 503 while the database is down);
- the route's own ASGI app (``_IngestRoute``: authentication, scope check, then the endpoint).

The route stays registered in the app, for OpenAPI and the route/scope table. When FastAPI's
telemetry is configured (a tracer, meter or logger provider) by the time the first report arrives,
the lane is not used, so that ingest requests get their spans like every other route.
"""

from __future__ import annotations

from typing import Optional

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from imagetrail.api.reports import INGEST_PATH, router  # included without a prefix (create_app)


def _routed() -> ASGIApp:
    """The route's ASGI app, with the scope keys the router would have set (``authorize`` reads
    the route's row in ROUTE_SCOPES from ``scope["route"]``)."""
    route = next((r for r in router.routes if isinstance(r, APIRoute) and r.path == INGEST_PATH
                  and "POST" in r.methods), None)
    if route is None:
        raise LookupError(f"POST {INGEST_PATH} is not a route of imagetrail.api.reports")

    async def routed(scope: Scope, receive: Receive, send: Send) -> None:
        scope.update(route=route, endpoint=route.endpoint, path_params={})
        await route.app(scope, receive, send)

    return routed


def build_ingest_lane(app: FastAPI) -> ASGIApp:
    """The app's own error handling and middleware around the ingest route, without the router."""
    error_handler = None
    handlers = {}
    for key, value in app.exception_handlers.items():  # partitioned as FastAPI.build_middleware_stack does
        if key in (500, Exception):
            error_handler = value
        else:
            handlers[key] = value
    lane: ASGIApp = ExceptionMiddleware(_routed(), handlers=handlers, debug=app.debug)
    for cls, args, kwargs in reversed(app.user_middleware):
        lane = cls(lane, *args, **kwargs)
    return ServerErrorMiddleware(lane, handler=error_handler, debug=app.debug)


def _telemetry_configured(app: FastAPI) -> bool:
    native = getattr(app, "_native_telemetry", None)  # FastAPI's built-in OpenTelemetry, where it has one
    return bool(native is not None and native.enabled())


class ImageTrailAPI(FastAPI):
    """The app; ``POST /v1/reports`` takes the ingest lane (``ingest_lane = False`` turns it off)."""

    ingest_lane: Optional[bool] = None  # None: decided on the first report (telemetry configured or not)
    _lane: Optional[ASGIApp] = None

    def _ingest_request(self, scope: Scope) -> bool:
        if scope["type"] != "http" or scope["method"] != "POST":
            return False
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        return path == INGEST_PATH

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.ingest_lane is not False and self._ingest_request(scope):
            if self.ingest_lane is None:
                self.ingest_lane = not _telemetry_configured(self)
            if self.ingest_lane:
                if self._lane is None:
                    self._lane = build_ingest_lane(self)
                scope["app"] = self
                await self._lane(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
