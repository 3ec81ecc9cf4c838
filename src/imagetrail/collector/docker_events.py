"""A lean, standard-library client for the one call on the hot path: the daemon's
recent push events, ``GET /events?since=..&until=..&filters=..`` over a Unix socket.

Why not docker-py here: the post-job step runs after every job of an organisation and
usually finds nothing pushed. Importing docker-py (and with it requests/urllib3) costs
about 235 ms beyond Python's own start on the reference machine (benchmarks/
bench_collector.py, ``-X importtime``), and even ``http.client`` costs about 40 ms (it
pulls in ``email`` and ``ssl``) - a third of the collector's whole import cost. The daemon
answers a plain HTTP/1.0 request on its Unix socket and closes the connection after the
answer, so a socket, one request line and a small response parser are all this needs.
docker-py is imported only when there are pushes to resolve, or when the daemon is not
behind a Unix socket (TCP/TLS, ssh, Windows named pipes).

The path is unversioned on purpose: the daemon then serves its own current API version,
so this works with engines whose minimum API version is above any version we could pin.
"""

from __future__ import annotations

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


def _dechunk(body: bytes) -> bytes:
    """``Transfer-Encoding: chunked`` (not used for HTTP/1.0 requests, but tolerated)."""
    out, index = [], 0
    while True:
        line_end = body.find(b"\r\n", index)
        if line_end < 0:
            raise ValueError("a chunk size line is cut off")
        size = int(body[index:line_end].split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            return b"".join(out)
        out.append(body[line_end + 2:line_end + 2 + size])
        index = line_end + 2 + size + 2


def parse_response(raw: bytes) -> "tuple[int, bytes]":
    """Status and body of a whole HTTP/1.x answer; ValueError when it is not one."""
    head, separator, body = raw.partition(b"\r\n\r\n")
    if not separator:
        raise ValueError("no complete HTTP header")
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ", 2)
    if len(status) < 2 or not status[0].startswith(b"HTTP/1.") or not status[1].isdigit():
        raise ValueError(f"not an HTTP answer: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = _dechunk(body)
    elif headers.get(b"content-length", b"").isdigit():
        length = int(headers[b"content-length"])
        if len(body) < length:
            raise ValueError("the body is shorter than its Content-Length")
        body = body[:length]
    return int(status[1]), body


def unix_get(socket_path: str, path: str, deadline: Deadline, cap: float = 10.0,
             reserve: float = 1.0) -> bytes:
    """``GET path`` on the daemon's Unix socket; the body of a 200 answer. Every socket
    operation (connect, each read) is bounded by the remaining budget less ``reserve``, and
    so is the whole read loop."""
    where = f"the Docker daemon at unix://{socket_path}"
    request = (f"GET {path} HTTP/1.0\r\nHost: docker\r\nAccept: application/json\r\n"
               "User-Agent: imagetrail-collector\r\n\r\n").encode("ascii")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(deadline.timeout(cap, reserve))
        sock.connect(socket_path)
        sock.sendall(request)
        chunks: List[bytes] = []
        size = 0
        while True:
            if deadline.remaining() <= reserve:
                raise DockerUnavailable(f"{where} did not finish answering before the deadline")
            sock.settimeout(deadline.timeout(cap, reserve))
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_EVENTS_BYTES:
                raise DockerUnavailable(f"{where} sent more than {MAX_EVENTS_BYTES} bytes")
        try:
            status, body = parse_response(b"".join(chunks))
        except ValueError as exc:
            raise DockerUnavailable(f"{where} did not answer as the Engine API does: {exc}") from None
        if status != 200:
            raise DockerUnavailable(f"{where} answered HTTP {status}: "
                                    f"{body[:200].decode('utf-8', 'replace')}")
        return body
    except FileNotFoundError:
        raise DockerUnavailable(f"no Docker daemon: {socket_path} does not exist") from None
    except socket.timeout:
        raise DockerUnavailable(f"{where} did not answer in time") from None
    except OSError as exc:
        raise DockerUnavailable(f"cannot read from {where}: {exc}") from None
    finally:
        sock.close()


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
