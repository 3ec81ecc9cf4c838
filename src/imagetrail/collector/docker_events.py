"""A lean, standard-library client for the one call on the hot path: the daemon's
recent push events, ``GET /events?since=..&until=..&filters=..`` over a Unix socket.

Why not docker-py here: the post-job step runs after every job of an organisation and
usually finds nothing pushed. Importing docker-py (and with it requests/urllib3) costs
about 345 ms on the reference machine (``python3 -X importtime -c 'import docker'``,
cumulative for ``docker``), against about 45 ms for ``http.client``; Python's own start
is about 115 ms. docker-py is imported only when there are pushes to resolve, or when
the daemon is not behind a Unix socket (TCP/TLS, ssh, Windows named pipes).

The path is unversioned on purpose: the daemon then serves its own current API version,
so this works with engines whose minimum API version is above any version we could pin.
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any, Dict, List
from urllib.parse import urlencode

from imagetrail.collector.deadline import Deadline

PUSH_FILTERS = json.dumps({"type": ["image"], "event": ["push"]}, separators=(",", ":"))
MAX_EVENTS_BYTES = 16 * 1024 * 1024  # the daemon keeps 256 events; anything larger is not a daemon


class DockerUnavailable(Exception):
    """The daemon could not be asked (absent, refusing, hanging, or not speaking the Engine API)."""


def docker_time(ns: int) -> str:
    """Nanoseconds since the epoch in the daemon's ``since``/``until`` syntax (seconds.nanoseconds)."""
    seconds, nanos = divmod(int(ns), 1_000_000_000)
    return f"{seconds}.{nanos:09d}"


def decode_json_stream(data: str) -> List[Dict[str, Any]]:
    """The events endpoint writes one JSON object after another (newline separated)."""
    decoder = json.JSONDecoder()
    items: List[Dict[str, Any]] = []
    index, end = 0, len(data)
    while index < end:
        while index < end and data[index] in " \t\r\n":
            index += 1
        if index >= end:
            break
        item, index = decoder.raw_decode(data, index)
        if isinstance(item, dict):
            items.append(item)
    return items


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def unix_get(socket_path: str, path: str, deadline: Deadline, cap: float = 10.0,
             reserve: float = 1.0) -> bytes:
    """``GET path`` on the daemon's Unix socket; the body of a 200 answer. Every socket
    operation (connect, each read) is bounded by the remaining budget less ``reserve``, and
    so is the whole read loop."""
    where = f"the Docker daemon at unix://{socket_path}"
    connection = _UnixHTTPConnection(socket_path, timeout=deadline.timeout(cap, reserve))
    try:
        connection.request("GET", path, headers={"Accept": "application/json"})
        response = connection.getresponse()
        chunks: List[bytes] = []
        size = 0
        while True:
            if deadline.remaining() <= reserve:
                raise DockerUnavailable(f"{where} did not finish answering before the deadline")
            connection.sock.settimeout(deadline.timeout(cap, reserve))
            chunk = response.read1(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_EVENTS_BYTES:
                raise DockerUnavailable(f"{where} sent more than {MAX_EVENTS_BYTES} bytes")
        body = b"".join(chunks)
        if response.status != 200:
            raise DockerUnavailable(f"{where} answered HTTP {response.status}: "
                                    f"{body[:200].decode('utf-8', 'replace')}")
        return body
    except FileNotFoundError:
        raise DockerUnavailable(f"no Docker daemon: {socket_path} does not exist") from None
    except socket.timeout:
        raise DockerUnavailable(f"{where} did not answer in time") from None
    except (OSError, http.client.HTTPException) as exc:
        raise DockerUnavailable(f"cannot read from {where}: {exc}") from None
    finally:
        connection.close()


def unix_push_events(socket_path: str, since_ns: int, until_ns: int, deadline: Deadline,
                     cap: float = 10.0, reserve: float = 1.0) -> List[Dict[str, Any]]:
    """Push events the daemon still holds for [since, until]."""
    query = urlencode({"since": docker_time(since_ns), "until": docker_time(until_ns),
                       "filters": PUSH_FILTERS})
    body = unix_get(socket_path, "/events?" + query, deadline, cap, reserve)
    try:
        return decode_json_stream(body.decode("utf-8", "replace"))
    except ValueError as exc:
        message = f"the Docker daemon at unix://{socket_path} sent unreadable events: {exc}"
        raise DockerUnavailable(message) from None


def unix_engine_id(socket_path: str, deadline: Deadline, cap: float = 2.0, reserve: float = 1.0) -> str:
    """The engine's ID from ``GET /info`` (stable for the daemon's data root)."""
    body = unix_get(socket_path, "/info", deadline, cap, reserve)
    try:
        engine_id = json.loads(body.decode("utf-8", "replace")).get("ID")
    except (ValueError, AttributeError):
        engine_id = None
    if not isinstance(engine_id, str) or not engine_id.strip():
        raise DockerUnavailable(f"the Docker daemon at unix://{socket_path} sent no engine ID in GET /info")
    return engine_id.strip()[:200]
