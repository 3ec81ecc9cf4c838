"""No silent loss: times keep their instant on SQLite and PostgreSQL, and a scan sent twice is
stored once (issue 9, "Why" 10)."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone

import sqlalchemy as sa

import imagetrail.store.models  # noqa: F401 - registers every table on Base.metadata
from imagetrail.store.db import Base, UTCDateTime
from tests.cloud.support import FIXTURES
from tests.server.conftest import new_key
from tests.server.reports import ado_report, body, digest, push

GRYPE = json.loads((FIXTURES / "grype_chainguard-ruby_image.json").read_text())
MANIFEST = GRYPE["source"]["target"]["manifestDigest"]


def _grype(timestamp: str, drop_matches: int = 0) -> bytes:
    document = copy.deepcopy(GRYPE)
    document["descriptor"]["timestamp"] = timestamp
    document["matches"] = document["matches"][drop_matches:]
    return json.dumps(document).encode()


def _post_scan(client, headers, data: bytes, name: str = "ruby.json") -> dict:
    answer = client.post("/v1/scans", params={"file_name": name}, content=data, headers=headers)
    assert answer.status_code == 201, answer.text
    return answer.json()["images"][0]


def test_every_time_column_is_stored_as_utc():
    columns = [f"{table.name}.{column.name}" for table in Base.metadata.tables.values()
               for column in table.columns if isinstance(column.type, sa.DateTime)]
    assert columns == [], f"use imagetrail.store.db.UTCDateTime for {columns}"
    assert any(isinstance(column.type, UTCDateTime) for table in Base.metadata.tables.values()
               for column in table.columns)


def test_a_grype_time_with_an_offset_is_stored_as_its_instant(client):
    headers = new_key(client, "*", "ingest")
    scan = _post_scan(client, headers, _grype("2023-05-17T21:00:56-04:00"))
    with client.app.state.sessions() as session:
        from imagetrail.store.models.cloud import ImageScan

        stored = session.get(ImageScan, scan["scan_id"]).scanned_at
    assert stored == datetime(2023, 5, 18, 1, 0, 56, tzinfo=timezone.utc)
    assert stored.utcoffset().total_seconds() == 0


def test_the_newest_scan_is_the_newest_instant_not_the_latest_wall_clock(client):
    """01:00:56 UTC (written 21:00:56-04:00) is newer than 00:30 UTC the same night."""
    headers = new_key(client, "*", "ingest")
    later = _post_scan(client, headers, _grype("2023-05-17T21:00:56-04:00"), "later.json")
    earlier = _post_scan(client, headers, _grype("2023-05-18T00:30:00Z", drop_matches=1), "earlier.json")
    assert later["latest"] and not earlier["latest"]
    with client.app.state.engine.connect() as conn:
        summary = conn.execute(sa.text("SELECT scan_id FROM vulnerability_summaries WHERE digest = :d"),
                               {"d": MANIFEST}).scalar_one()
    assert summary == later["scan_id"]


def test_the_same_scan_sent_again_does_not_add_history(client):
    headers = new_key(client, "*", "ingest")
    first = _post_scan(client, headers, _grype("2023-05-17T21:00:56-04:00"))
    again = _post_scan(client, headers, _grype("2023-05-17T21:00:56-04:00"), "renamed.json")
    assert (again["scan_id"], again["duplicate"], again["latest"]) == (first["scan_id"], True, True)
    assert not first["duplicate"]
    # the same instant written with another offset is the same scan
    assert _post_scan(client, headers, _grype("2023-05-18T01:00:56Z"))["duplicate"]
    with client.app.state.engine.connect() as conn:
        scans = conn.execute(sa.text("SELECT COUNT(*) FROM image_scans")).scalar_one()
        findings = conn.execute(sa.text("SELECT COUNT(*) FROM vulnerability_findings")).scalar_one()
    assert (scans, findings) == (1, len(GRYPE["matches"]))
    # a different scan (one finding fewer) is new history
    assert not _post_scan(client, headers, _grype("2023-05-19T00:00:00Z", drop_matches=1))["duplicate"]


def test_a_push_time_with_an_offset_keeps_its_instant(client, admin):
    report = ado_report(pushes=[push("127.0.0.1:5000/web/app:1", digest("t"), pushed_at="2024-06-01T10:00:00-04:00")])
    assert client.post("/v1/reports", json=body(report), headers=admin).status_code == 201
    trail = client.get(f"/v1/images/{digest('t')}/trail", headers=admin).json()
    pushed = datetime.fromisoformat(trail["pushes"][0]["pushed_at"].replace("Z", "+00:00"))
    assert pushed == datetime(2024, 6, 1, 14, 0, tzinfo=timezone.utc)


def test_a_push_time_outside_the_utc_calendar_does_not_break_the_trail(client, admin):
    """0001-01-01T00:00:00+01:00 is a year-0 instant in UTC: PostgreSQL stores it, Python cannot read it."""
    report = ado_report(pushes=[push("127.0.0.1:5000/web/app:1", digest("edge"),
                                     pushed_at="0001-01-01T00:00:00+01:00")])
    assert client.post("/v1/reports", json=body(report), headers=admin).status_code == 201
    answer = client.get(f"/v1/images/{digest('edge')}/trail", headers=admin)
    assert answer.status_code == 200 and len(answer.json()["pushes"]) == 1


def test_a_scan_time_outside_the_utc_calendar_is_not_a_server_error(client):
    answer = client.post("/v1/scans", params={"file_name": "edge.json"}, content=_grype("0001-01-01T00:00:00+01:00"),
                         headers=new_key(client, "*", "ingest"))
    assert answer.status_code == 201, answer.text
