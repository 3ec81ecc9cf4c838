"""Bad input is a 4xx naming the field, never a 5xx, and never another client's failure
(issue 9, "Why" 6 and 7)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from imagetrail.auth import Principal
from imagetrail.ingest.reports import IngestResult, store_reports
from imagetrail.json_input import MAX_DEPTH
from tests.server.conftest import new_key
from tests.server.reports import ado_report, body, digest, push

ADMIN = Principal(kind="api-key", subject="key:test", scopes=frozenset({"admin"}), organizations=None)
HUGE = str(10**22)


def _report(run: str, *, attempt: int = 1):
    report = ado_report(run_id=run, pushes=[push(f"127.0.0.1:5000/web/app:{run}", digest(run))])
    report.context.run.attempt = attempt
    return body(report)


def _raw(data: dict, old: str, new: str) -> bytes:
    """The report as JSON text with one string replaced (to write escapes json.dumps would not)."""
    text = json.dumps(data)
    assert old in text
    return text.replace(old, new, 1).encode()


@pytest.mark.parametrize("change, field", [
    (lambda r: r["context"]["run"].update(attempt=2**63), "context.run.attempt"),
    (lambda r: r["context"]["job"].update(attempt=2**31), "context.job.attempt"),
    (lambda r: r["context"]["organization"].update(name="o" * 256), "context.organization.name"),
    (lambda r: r["context"]["repository"].update(commit="c" * 65), "context.repository.commit"),
    (lambda r: r["pushes"][0]["labels"].update({"k" * 256: "v"}), "pushes[0].labels"),
    (lambda r: r.update(schemaVersion="1." + "0" * 20), "schemaVersion"),
])
def test_values_the_database_cannot_hold_are_422_naming_the_field(client, admin, change, field):
    report = _report("1")
    change(report)
    answer = client.post("/v1/reports", json=report, headers=admin)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(field)


@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,  # past the parser's recursion limit
    b'{"context": ' + b'{"a": ' * (MAX_DEPTH + 5) + b"1" + b"}" * (MAX_DEPTH + 6),  # parses, nests too deep
    b'{"reportId": ' + b"[" * 900 + b"]" * 900 + b"}",  # a refusal message would repr 900 levels
], ids=["past-the-parser-limit", "parses-but-too-deep", "deep-value-in-a-refusal"])
def test_deeply_nested_json_is_refused_with_a_4xx(client, admin, raw):
    for path, headers, params in (("/v1/reports", admin, {}),
                                  ("/v1/scans", new_key(client, "*", "ingest"), {"file_name": "deep.json"})):
        answer = client.post(path, content=raw, params=params, headers={**headers, "Content-Type": "application/json"})
        assert answer.status_code == 422, (path, answer.text[:300])
        assert "nested deeper than" in answer.json()["detail"]


def test_a_lone_surrogate_is_422_naming_the_field_and_valid_pairs_are_stored(client, admin, database_url):
    report = _report("7")
    lone = _raw(report, '"Ann Owner"', '"Ann \\ud800 Owner"')
    answer = client.post("/v1/reports", content=lone, headers={**admin, "Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith("context.requester.name")
    # an escaped pair (what json.dumps writes for an emoji) is one valid character
    pair = _raw(report, '"Ann Owner"', '"Ann \\ud83d\\ude00 Owner"')
    assert client.post("/v1/reports", content=pair,
                       headers={**admin, "Content-Type": "application/json"}).status_code == 201
    with client.app.state.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM people")).scalar_one() == "Ann \U0001F600 Owner"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_422_and_nothing_is_stored(client, admin, constant):
    # json.loads accepts them, but they are not JSON: stored JSON would hold null or be refused by the database
    raw = _raw(_report("8"), '"Ann Owner"', constant)
    answer = client.post("/v1/reports", content=raw, headers={**admin, "Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert constant in answer.json()["detail"] and "RFC 8259" in answer.json()["detail"]
    with client.app.state.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM reports")).scalar_one() == 0


def test_a_lone_surrogate_in_a_scan_is_422(client):
    scan = b'{"SchemaVersion": 2, "ArtifactName": "app\\udc00", "Metadata": {"RepoDigests": []}}'
    answer = client.post("/v1/scans", params={"file_name": "s.json"}, content=scan,
                         headers={**new_key(client, "*", "ingest"), "Content-Type": "application/json"})
    assert answer.status_code == 422 and "ArtifactName" in answer.json()["detail"]


@pytest.mark.parametrize("url", [
    f"/v1/query?page={HUGE}", "/v1/query?page=1e22", f"/v1/coverage/gaps?page={HUGE}",
    "/v1/images/sha256:" + "a" * 64 + "/trail?before=2024-06-01T10:00:00Z," + "9" * 40,
    "/v1/images/sha256:" + "a" * 64 + "/trail?before=9999-12-31T23:59:59-10:00,1",
    f"/v1/trail?reference=r.example/app:1&before=0001-01-01T00:00:00%2B01:00,{HUGE}",
])
def test_out_of_range_pages_and_cursors_are_422(client, admin, url):
    answer = client.get(url, headers=admin)
    assert answer.status_code == 422, answer.text
    assert any(name in answer.text for name in ("page", "before"))


def test_out_of_range_pages_on_web_pages_are_not_5xx(client, admin):
    explorer = client.get(f"/explorer?page={HUGE}", headers=admin)
    assert explorer.status_code == 400 and "page" in explorer.text
    assert client.get(f"/coverage?page={HUGE}", headers=admin).status_code == 200


def test_bad_reports_in_a_concurrent_burst_fail_alone(client, admin):
    """150 valid and 30 reports with run.attempt = 2**63, sent at once (group commit batches them)."""
    valid = [_report(f"v{n}") for n in range(150)]
    bad = [_report(f"b{n}", attempt=2**63) for n in range(30)]
    mixed = valid[:50] + bad[:15] + valid[50:100] + bad[15:] + valid[100:]
    with client, ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda r: client.post("/v1/reports", json=r, headers=admin), mixed))
    by_id = {r["reportId"]: a for r, a in zip(mixed, answers)}
    assert sorted(by_id[r["reportId"]].status_code for r in valid) == [201] * 150
    for report in bad:
        answer = by_id[report["reportId"]]
        assert answer.status_code == 422 and answer.json()["detail"].startswith("context.run.attempt")
    with client.app.state.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM reports")).scalar_one() == 150


def test_a_batch_failing_for_a_reason_other_than_the_driver_is_retried_report_by_report(client):
    """Past validation (e.g. a report stored by an older server's reconcile), a value the driver
    refuses before the database sees it (SQLite: OverflowError) sinks only its own report."""
    good = [_report(f"g{n}") for n in range(3)]
    outcomes = store_reports(client.app.state.sessions,
                             [(good[0], ADMIN), (_report("x", attempt=2**63), ADMIN), (good[1], ADMIN),
                              (good[2], ADMIN)])
    assert [type(o) is IngestResult for o in outcomes] == [True, False, True, True]
    assert isinstance(outcomes[1], Exception)
    assert all(o.created for o in outcomes if isinstance(o, IngestResult))


def test_the_long_integer_check_finds_exactly_the_runs_of_19_digits():
    """The check that sends a body to json.loads (orjson would round the integer) matches the regex it stands
    for on every input: 18 digits, 19, runs broken by any other byte, and random bytes."""
    import random
    import re

    from imagetrail.json_input import _may_hold_long_integer

    spelled = re.compile(rb"[0-9]{19}")
    cases = [b"1" * 18, b"1" * 19, b"0" * 19, b"x" + b"9" * 19 + b"x", b"123456789.1234567890", b"-" + b"5" * 18,
             b"sha256:" + b"0123456789" * 2, b"12345678901234567890"[:18] + b"a" + b"1" * 18, b""]
    rng = random.Random(11)
    alphabet = b"0123456789" * 6 + b"ab.,-e "  # mostly digits: runs of every length around 19
    cases += [bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 400))) for _ in range(2000)]
    for data in cases:
        assert _may_hold_long_integer(data) == bool(spelled.search(data)), data
    assert [_may_hold_long_integer(b"1" * n) for n in (18, 19, 20)] == [False, True, True]


@pytest.mark.parametrize("raw", [
    b'{"a": 1, "a": [2, 3.25, -0.0, 1e-7, 1E+300, true, false, null]}',  # a repeated key: the last one wins
    '{"name": "caf\\u00e9 \\ud83d\\ude00 \u00fc", "tab": "a\\tb", "slash": "\\/"}'.encode(),
    b"\xef\xbb\xbf" + b'{"bom": 1}',  # UTF-8 with a byte order mark
    '{"utf16": 1}'.encode("utf-16"),  # json.loads detects UTF-16 and UTF-32 bytes
    b"[9223372036854775807, -9223372036854775808, 18446744073709551615]",
    b"[18446744073709551616123, -99999999999999999999999]",  # past 64 bits: exact, never a rounded float
    b'{"digest": "sha256:1234567890123456789012345678901234567890123456789012345678901234"}',
    b"[1e400]",
])
def test_the_fast_parser_reads_every_body_as_json_loads_does(raw):
    """Bodies go through orjson first; for every body both parsers accept, the value is json.loads' own, down
    to the type of each number (an integer past 64 bits stays an exact int)."""
    from imagetrail.json_input import loads

    def typed(value):
        if isinstance(value, dict):
            return {key: typed(child) for key, child in value.items()}
        if isinstance(value, list):
            return [typed(child) for child in value]
        return (type(value).__name__, value)

    assert typed(loads(raw)) == typed(json.loads(raw))
