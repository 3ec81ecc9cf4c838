"""Body limits are enforced on the stream, before parsing and authentication (issue 9, "Why" 5)."""

from __future__ import annotations

import http.client
import select
import socket
import time
from pathlib import Path
from typing import Iterator, Tuple

import pytest

from imagetrail.api.limits import DEFAULT_BODY_BYTES, body_limits
from imagetrail.auth.route_scopes import ROUTE_SCOPES
from imagetrail.settings import Settings
from tests.support.live_server import server_process

MIB = 1024 * 1024
# Anonymous POSTs that used to be read whole: a form, and two JSON body models.
ANONYMOUS_TARGETS = [
    ("/login", "application/x-www-form-urlencoded"),
    ("/v1/image-relations", "application/json"),
    ("/v1/remediations", "application/json"),
]


def _chunks(total: int, size: int = 256 * 1024) -> Iterator[bytes]:
    size = min(size, total)
    block = b"a" * size
    for _ in range(total // size):
        yield block


@pytest.mark.parametrize("path,content_type", ANONYMOUS_TARGETS + [("/v1/reports", "application/json")])
def test_a_declared_oversized_body_is_refused_before_authentication(client, path, content_type):
    limit, _ = body_limits(client.app.state.settings)[("POST", path)]
    answer = client.post(path, content=b"x" * (limit + 1), headers={"Content-Type": content_type})
    assert answer.status_code == 413, answer.text  # not 401 or 422: nothing was parsed or authenticated
    assert str(limit) in answer.json()["detail"] and "POST " + path in answer.json()["detail"]


@pytest.mark.parametrize("path,content_type", ANONYMOUS_TARGETS)
def test_a_streamed_body_without_length_is_cut_off_at_the_limit(client, path, content_type):
    limit, _ = body_limits(client.app.state.settings)[("POST", path)]
    answer = client.post(path, content=_chunks(limit + 512 * 1024), headers={"Content-Type": content_type})
    assert answer.status_code == 413, answer.text
    assert str(limit) in answer.json()["detail"]


def test_routes_not_in_the_table_get_the_small_default(client):
    answer = client.request("GET", "/healthz", content=b"x" * (DEFAULT_BODY_BYTES + 1))
    assert answer.status_code == 413
    assert client.request("GET", "/healthz", content=b"x" * 10).status_code == 200


def _served(routes) -> set:
    found = set()
    for route in routes:
        if hasattr(route, "original_router"):  # FastAPI's included router
            found |= _served(route.original_router.routes)
        else:
            found |= {(method, route.path) for method in getattr(route, "methods", None) or ()}
    return found


def test_every_limit_names_a_route_of_the_app(client):
    served = _served(client.app.router.routes)
    assert set(body_limits(Settings())) <= served
    # and every route that takes a body has its own row (the default is for GETs)
    posts = {key for key in ROUTE_SCOPES if key[0] in ("POST", "PUT", "PATCH")}
    assert posts <= set(body_limits(Settings())), posts - set(body_limits(Settings()))


def test_the_report_limit_follows_its_setting(make_client):
    client = make_client(max_report_bytes=2048)
    answer = client.post("/v1/reports", content=b"{" + b" " * 4096 + b"}", headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and "IMAGETRAIL_MAX_REPORT_BYTES" in answer.json()["detail"]


# -- against the real server: its memory does not grow with the body ----------------------------


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def _send(base: str, path: str, content_type: str, total: int, declare: bool) -> Tuple[int, int]:
    """POST ``total`` bytes (with or without Content-Length) until the server answers; (status, bytes sent)."""
    host, port = base.rsplit("//", 1)[1].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.putrequest("POST", path)
    connection.putheader("Content-Type", content_type)
    if declare:
        connection.putheader("Content-Length", str(total))
    else:
        connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    sent = 0
    try:
        for chunk in _chunks(total, MIB):
            if select.select([connection.sock], [], [], 0)[0]:
                break  # the server answered already: stop sending, read the answer
            connection.send(chunk if declare else b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        if not declare and sent == total:
            connection.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass  # the server answered and closed: what we want
    try:
        status = connection.getresponse().status
    finally:
        connection.close()
    return status, sent


@pytest.mark.e2e
@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "chunked"])
def test_anonymous_huge_bodies_do_not_grow_server_memory(sqlite_url, declare):
    total = 300 * MIB
    with server_process(sqlite_url) as (base, process):
        for path, content_type in ANONYMOUS_TARGETS:  # warm up: first requests import and allocate
            _send(base, path, content_type, 64 * 1024, declare=True)
        before = _peak_rss(process.pid)
        started = time.monotonic()
        for path, content_type in ANONYMOUS_TARGETS:
            status, sent = _send(base, path, content_type, total, declare)
            assert status == 413, (path, status)
            assert sent < total or not declare, "the server read a declared oversized body to its end"
        grown = _peak_rss(process.pid) - before
    # Each body is 300 MB; the largest of these routes reads at most 4 MB of it.
    assert grown < 32 * MIB, f"server peak memory grew by {grown / MIB:.0f} MB"
    assert time.monotonic() - started < 60


def test_a_nul_in_query_parameters_is_refused_before_any_query(client):
    """Found by the fuzzer on PostgreSQL: GET /search?q=%00 reached the database as a DataError (500)."""
    for path in ("/search?q=a%00b", "/v1/trail?reference=x%00", "/v1/query?cve=%00"):
        answer = client.get(path)
        assert answer.status_code == 422, (path, answer.status_code)
        assert "NUL" in answer.json()["detail"]
