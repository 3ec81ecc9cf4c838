"""The JSON of ingest's set-based statements (store/bulk.py) holds what the standard encoder writes (the text may
differ: non-ASCII stays unescaped, floats are written shortest)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from imagetrail.store.bulk import _rows_json


def _standard(rows):
    return json.dumps(rows, default=lambda value: value.isoformat(), separators=(",", ":"))


def test_rows_encode_like_the_standard_encoder():
    rows = [
        {"id": "sha256:" + "a" * 64, "received_at": datetime(2024, 6, 1, 10, 0, tzinfo=timezone.utc),
         "body": {"context": {"requester": {"name": "Zoë \u2603 \"quoted\" \\ back"}}, "pushes": [{"n": 1}]},
         "job_id": 7, "labels": {}, "digest_error": None, "ok": True, "share": 0.5},
        {"id": "b", "received_at": datetime(2024, 6, 1, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-4))),
         "body": {}, "job_id": -2147483648, "labels": {"org.opencontainers.image.source": "x"},
         "digest_error": "unreachable", "ok": False, "share": 1e-7},
        {"id": "c", "received_at": datetime(2024, 6, 1, 10, 0), "body": {"emoji": "\U0001f433"}, "job_id": 0,
         "labels": {}, "digest_error": None, "ok": None, "share": 3},
    ]
    assert json.loads(_rows_json(rows)) == json.loads(_standard(rows))
    for row in rows:  # the times exactly as isoformat() writes them (PostgreSQL reads them back)
        assert f'"{row["received_at"].isoformat()}"' in _rows_json([row])


def test_values_the_fast_encoder_refuses_go_through_the_standard_one():
    rows = [{"id": "big", "body": {"n": 2**70}}]
    assert _rows_json(rows) == _standard(rows)
