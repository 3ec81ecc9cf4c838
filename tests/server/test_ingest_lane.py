"""The ingest lane (server/ingest_lane.py) answers exactly as the routed app does, for every outcome."""

from __future__ import annotations

import json
from typing import Callable, Dict, List, Tuple

import pytest
from fastapi.testclient import TestClient

from imagetrail.auth.api_keys import KEY_PREFIX
from imagetrail.report import Person
from imagetrail.server import ingest_lane
from tests.server.conftest import new_key
from tests.server.reports import ado_report, body, digest, push

Answer = Tuple[int, object, Dict[str, str]]
HEADERS_THAT_MATTER = ("content-type", "retry-after", "connection", "allow")


def _answer(response) -> Answer:
    try:
        content: object = response.json()
    except ValueError:
        content = response.text
    return response.status_code, content, {k: response.headers[k] for k in HEADERS_THAT_MATTER if k in response.headers}


def _outcomes(client: TestClient, tag: str) -> List[Answer]:
    """One request of each kind the route answers, on reports of their own (``tag``)."""
    admin = new_key(client, "*", "admin")
    reader = new_key(client, "*", "read")
    other_org = new_key(client, "fabrikam", "ingest")
    report = body(ado_report(run_id=tag, pushes=[push("127.0.0.1:5000/web/app:1", digest(tag))]))
    changed = body(ado_report(run_id=tag, pushes=[push("127.0.0.1:5000/web/app:1", digest(tag))],
                              requester=Person("u2", "Mallory", "mallory@contoso.example")))
    assert changed["reportId"] == report["reportId"]  # the id names the job; the content differs
    invalid = json.loads(json.dumps(report))
    invalid["pushes"][0]["digest"] = "sha256:short"
    limit = client.app.state.settings.max_report_bytes
    requests: List[Callable[[], object]] = [
        lambda: client.post("/v1/reports", json=report, headers=admin),  # 201
        lambda: client.post("/v1/reports", json=report, headers=admin),  # 200, a duplicate
        lambda: client.post("/v1/reports", json=changed, headers=admin),  # 409
        lambda: client.post("/v1/reports", json=invalid, headers=admin),  # 422, names the field
        lambda: client.post("/v1/reports", content=b"{not json", headers={**admin, "Content-Type": "application/json"}),
        lambda: client.post("/v1/reports", content=b"x" * (limit + 1), headers=admin),  # 413 before auth
        lambda: client.post("/v1/reports", json=report),  # 401
        lambda: client.post("/v1/reports", json=report, headers={"Authorization": f"Bearer {KEY_PREFIX}nosuchkey"}),
        lambda: client.post("/v1/reports", json=report, headers=reader),  # 403: no write scope
        lambda: client.post("/v1/reports", json=report, headers=other_org),  # 403: another organisation
        lambda: client.get("/v1/reports", headers=admin),  # 405, not the lane's method
    ]
    answers = []
    for send in requests:
        status, content, headers = _answer(send())
        if isinstance(content, dict) and isinstance(content.get("detail"), str):
            content = {**content, "detail": content["detail"].replace(report["reportId"], "<id>")}
        if isinstance(content, dict) and "reportId" in content:
            content = {**content, "reportId": "<id>"}
        answers.append((status, content, headers))
    return answers


def test_the_lane_and_the_router_give_the_same_answers(make_client):
    lane, routed = make_client(), make_client()
    routed.app.ingest_lane = False
    through_lane, through_router = _outcomes(lane, "lane"), _outcomes(routed, "routed")
    assert [a[0] for a in through_lane] == [201, 200, 409, 422, 400, 413, 401, 401, 403, 403, 405]
    assert through_lane == through_router
    assert lane.app._lane is not None and routed.app._lane is None  # each took the path it was meant to


def test_the_lane_checks_the_route_scope_table(client, monkeypatch):
    """The lane sets the matched route as the router would; without it, ``authorize`` fails closed."""
    from imagetrail.auth import route_scopes

    monkeypatch.setattr(route_scopes, "ROUTE_SCOPES", {k: v for k, v in route_scopes.ROUTE_SCOPES.items()
                                                       if k != ("POST", "/v1/reports")})
    answer = client.post("/v1/reports", json=body(ado_report()), headers=new_key(client, "*", "admin"))
    assert answer.status_code == 403 and "ROUTE_SCOPES" in answer.json()["detail"]


def test_an_unavailable_database_is_503_on_both_paths(make_client):
    answers = []
    for use_lane in (True, False):
        client = make_client(database_url="postgresql+psycopg://nobody@127.0.0.1:9/none")
        client.app.ingest_lane = None if use_lane else False
        answers.append(_answer(client.post("/v1/reports", json=body(ado_report()),
                                           headers={"Authorization": f"Bearer {KEY_PREFIX}abc_{'a' * 43}"})))
    assert answers[0][0] == 503 and answers[0][2].get("retry-after"), answers[0]
    assert answers[0] == answers[1]


def test_an_unexpected_error_is_a_500_on_both_paths(make_client):
    answers = []
    for use_lane in (True, False):
        client = make_client()
        client.app.ingest_lane = None if use_lane else False

        async def broken(*_args):
            raise RuntimeError("a bug")

        client.app.state.ingest_writer.submit = broken
        quiet = TestClient(client.app, raise_server_exceptions=False)
        answers.append(_answer(quiet.post("/v1/reports", json=body(ado_report()),
                                          headers=new_key(client, "*", "admin"))))
    assert answers[0][0] == 500 and answers[0] == answers[1]


def test_configured_telemetry_keeps_ingest_on_the_router(client, monkeypatch):
    assert ingest_lane._telemetry_configured(client.app) is False  # no provider set in this process
    monkeypatch.setattr(ingest_lane, "_telemetry_configured", lambda app: True)
    answer = client.post("/v1/reports", json=body(ado_report()), headers=new_key(client, "*", "admin"))
    assert answer.status_code == 201
    assert client.app.ingest_lane is False and client.app._lane is None


@pytest.mark.parametrize("root_path", ["", "/imagetrail"])
def test_only_post_to_the_ingest_path_takes_the_lane(client, root_path):
    app = client.app
    assert app._ingest_request({"type": "http", "method": "POST", "path": root_path + "/v1/reports",
                                "root_path": root_path})
    for method, path in (("GET", "/v1/reports"), ("POST", "/v1/reports/x"), ("POST", "/v1/report"),
                         ("POST", "/v1/registry-events")):
        assert not app._ingest_request({"type": "http", "method": method, "path": root_path + path,
                                        "root_path": root_path})
    assert not app._ingest_request({"type": "websocket", "path": "/v1/reports", "root_path": ""})
