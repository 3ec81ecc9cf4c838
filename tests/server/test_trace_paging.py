"""Trail paging: newest first, a keyset cursor (``before``/``next``), ``limit`` bounds.

Runs on SQLite and PostgreSQL (the ``database_url`` fixture behind ``client``).
"""

from __future__ import annotations

from typing import List

import pytest

from imagetrail.auth import Principal
from imagetrail.queries.trace import Cursor, TraceQueryError, trail_for_digest
from tests.server.conftest import new_key
from tests.server.reports import ado_report, body, digest, push

SHARED = digest("shared")
REFERENCE = "127.0.0.1:5000/web/busy:latest"
# Seven runs push the same digest and tag; runs 3 and 4 at the same second (the id breaks the tie).
TIMES = {"1": "2024-06-01T10:00:00Z", "2": "2024-06-02T10:00:00Z", "3": "2024-06-03T10:00:00Z",
         "4": "2024-06-03T10:00:00Z", "5": "2024-06-04T10:00:00Z", "6": "2024-06-05T10:00:00Z",
         "7": "2024-06-06T10:00:00Z"}


@pytest.fixture
def busy(client, admin):
    for run_id, at in TIMES.items():
        report = ado_report(run_id=run_id, pushes=[push(REFERENCE, SHARED, pushed_at=at)])
        assert client.post("/v1/reports", json=body(report), headers=admin).status_code == 201


def _all_pages(client, headers, path: str, params: dict) -> List[dict]:
    pages, before = [], None
    while True:
        page = client.get(path, params={**params, **({"before": before} if before else {})}, headers=headers)
        assert page.status_code == 200, page.text
        pages.append(page.json())
        before = page.json()["next"]
        if not page.json()["has_more"]:
            assert before is None
            return pages


@pytest.mark.parametrize("path, params", [(f"/v1/images/{SHARED}/trail", {}),
                                          ("/v1/trail", {"reference": REFERENCE})])
def test_pages_walk_every_push_newest_first_without_repeats(client, admin, busy, path, params):
    whole = client.get(path, params={**params, "limit": 500}, headers=admin).json()
    runs = [p["run"]["id"] for p in whole["pushes"]]
    assert runs[:3] == ["7", "6", "5"] and runs[-2:] == ["2", "1"] and set(runs[3:5]) == {"3", "4"}
    assert whole["has_more"] is False and whole["next"] is None

    pages = _all_pages(client, admin, path, {**params, "limit": 3})
    assert [len(p["pushes"]) for p in pages] == [3, 3, 1]
    assert [p["run"]["id"] for page in pages for p in page["pushes"]] == runs
    times = [p["pushed_at"] for page in pages for p in page["pushes"]]
    assert times == sorted(times, reverse=True)


def test_a_cursor_between_two_pushes_of_the_same_second_keeps_both(client, admin, busy):
    # limit=4 ends the first page on one of the two 2024-06-03 pushes; the other one opens page 2.
    first = client.get(f"/v1/images/{SHARED}/trail", params={"limit": 4}, headers=admin).json()
    assert first["next"].startswith("2024-06-03T10:00:00.000000Z,")
    second = client.get(f"/v1/images/{SHARED}/trail", params={"limit": 4, "before": first["next"]},
                        headers=admin).json()
    assert {p["run"]["id"] for p in first["pushes"][3:] + second["pushes"][:1]} == {"3", "4"}
    assert [p["run"]["id"] for p in second["pushes"][1:]] == ["2", "1"]


def test_default_page_is_50_and_the_web_keeps_calling_without_paging_arguments(client, admin):
    reports = [ado_report(run_id=str(100 + n), pushes=[push(REFERENCE, SHARED, pushed_at=f"2024-07-01T10:{n:02d}:00Z")])
               for n in range(52)]
    for report in reports:
        assert client.post("/v1/reports", json=body(report), headers=admin).status_code == 201
    answer = client.get(f"/v1/images/{SHARED}/trail", headers=admin).json()
    assert len(answer["pushes"]) == 50 and answer["has_more"] is True
    assert answer["pushes"][0]["run"]["id"] == "151"
    with client.app.state.sessions() as session:  # in-process, as src/imagetrail/web calls it
        trail = trail_for_digest(session, SHARED, Principal(kind="test", subject="t", scopes=frozenset({"read"}),
                                                             organizations=None))
    assert len(trail.pushes) == 50 and trail.has_more and trail.next == answer["next"]


def test_paging_counts_only_what_the_reader_may_see(client, admin, busy):
    other = ado_report(org="fabrikam", org_id="00000000-1111-4222-8333-444444444444", run_id="99",
                       pushes=[push(REFERENCE, SHARED, pushed_at="2024-06-09T10:00:00Z")])
    assert client.post("/v1/reports", json=body(other), headers=admin).status_code == 201
    contoso = new_key(client, "contoso", "read")
    page = client.get(f"/v1/images/{SHARED}/trail", params={"limit": 7}, headers=contoso).json()
    assert len(page["pushes"]) == 7 and page["has_more"] is False and "99" not in {
        p["run"]["id"] for p in page["pushes"]}


@pytest.mark.parametrize("limit", [0, -1, 501, "many"])
def test_limit_out_of_bounds_is_422_naming_limit(client, admin, busy, limit):
    for path, params in ((f"/v1/images/{SHARED}/trail", {}), ("/v1/trail", {"reference": REFERENCE})):
        answer = client.get(path, params={**params, "limit": limit}, headers=admin)
        assert answer.status_code == 422
        assert [error["loc"] for error in answer.json()["detail"]] == [["query", "limit"]]


@pytest.mark.parametrize("before", ["yesterday", "2024-06-03T10:00:00Z", "2024-06-03T10:00:00,12",
                                    "2024-06-03T10:00:00Z,-3"])
def test_a_malformed_cursor_is_422_naming_before(client, admin, busy, before):
    answer = client.get(f"/v1/images/{SHARED}/trail", params={"before": before}, headers=admin)
    assert answer.status_code == 422 and answer.json()["detail"].startswith("before:")
    assert "'next' value" in answer.json()["detail"]


def test_cursor_text_round_trips():
    cursor = Cursor.parse("2024-06-03T10:00:00.250000Z,42")
    assert (cursor.push_id, cursor.pushed_at.microsecond) == (42, 250000)
    assert str(cursor) == "2024-06-03T10:00:00.250000Z,42" and Cursor.parse(str(cursor)) == cursor
    assert Cursor.parse("2024-06-03T12:00:00+02:00,1") == Cursor.parse("2024-06-03T10:00:00Z,1")
    with pytest.raises(TraceQueryError, match="^before:"):
        Cursor.parse("")


@pytest.mark.parametrize("path, params", [(f"/v1/images/{SHARED}/trail", {}),
                                          ("/v1/trail", {"reference": REFERENCE})])
def test_statements_built_once_bind_each_readers_organisations(client, admin, busy, path, params):
    # The trace's statements are built once and reused: readers taking turns (and pages by cursor) must each
    # get their own organisations bound, never the previous caller's.
    other = ado_report(org="fabrikam", org_id="00000000-1111-4222-8333-444444444444", run_id="99",
                       pushes=[push(REFERENCE, SHARED, pushed_at="2024-06-09T10:00:00Z")])
    assert client.post("/v1/reports", json=body(other), headers=admin).status_code == 201
    readers = {"admin": admin, "contoso": new_key(client, "contoso", "read"),
               "fabrikam": new_key(client, "fabrikam", "read")}
    expected = {"admin": {"99", *TIMES}, "contoso": set(TIMES), "fabrikam": {"99"}}
    for _ in range(3):  # past psycopg's prepare threshold (5 executions) on PostgreSQL
        for name, headers in readers.items():
            runs = {p["run"]["id"] for page in _all_pages(client, headers, path, {**params, "limit": 2})
                    for p in page["pushes"]}
            assert runs == expected[name], name


def test_a_reader_of_no_organisation_sees_no_push(client, busy):
    nobody = Principal(kind="api-key", subject="k", scopes=frozenset({"read"}), organizations=frozenset())
    with client.app.state.sessions() as session:
        answer = trail_for_digest(session, SHARED, nobody)
    assert answer.pushes == [] and answer.hidden_by_permissions is True
