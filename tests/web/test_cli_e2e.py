"""The CLI as a user meets it, against a real `imagetrail serve` loaded with the web dataset: tables that fit
the terminal, the same CSV columns as the web export, times with their offset, and the short digests and
registry-less references it prints accepted back (resolved among the pushes the reader may see)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace

import pytest
import requests

from imagetrail.client import images, query, trace
from imagetrail.views.columns import EXPLORER_HEADER
from tests.web import dataset
from tests.web.sign_in import csrf_token

pytestmark = pytest.mark.e2e

SHARED = "sha256:" + "abcdef012345"  # two pushed digests start with these 12 hex digits
TWINS = (SHARED + "1" + "0" * 51, SHARED + "2" + "0" * 51)


@pytest.fixture(scope="module")
def server(web_server):
    """The web dataset plus two contoso images whose digests share their first 12 hex digits."""
    template = dataset.BUILDS[0]
    for n, twin in enumerate(TWINS):
        build = replace(template, run_id=f"90{n}", run_number=f"twin.{n}", digest=twin,
                        references=[f"contosoacr.azurecr.io/payments/twin{n}:1.0"])
        answer = requests.post(web_server.url + "/v1/reports", json=dataset.report_for(build),
                               headers=web_server.headers(web_server.admin_key), timeout=30)
        assert answer.status_code in (200, 201), answer.text
    return web_server


def run(main, capsys, monkeypatch, server, *args, key=None):
    monkeypatch.setenv("IMAGETRAIL_API_KEY", key or server.admin_key)
    code = main([*args, "--url", server.url])
    out, err = capsys.readouterr()
    return code, out, err


def test_tables_fit_the_terminal_and_wide_shows_the_rest(server, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run(query.main, capsys, monkeypatch, server)
    assert code == 0, err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0].split()[:1] == ["WORKLOAD"] and {"IMAGE", "DIGEST", "RUN"} <= set(lines[0].split())
    assert any(dataset.CLAMAV[:19] in line for line in lines)  # the short digest trace accepts back
    assert dataset.CLAMAV not in out

    code, wide, _ = run(query.main, capsys, monkeypatch, server, "--wide")
    assert code == 0 and max(len(line) for line in wide.splitlines()) > 80
    assert dataset.CLAMAV in wide and "OWNER_SOURCE" in wide.splitlines()[0]

    monkeypatch.setenv("COLUMNS", "60")
    code, listed, err = run(images.main, capsys, monkeypatch, server, "--project", "payments")
    assert code == 0, err
    assert max(len(line) for line in listed.splitlines()) <= 60
    assert listed.splitlines()[0].split()[:3] == ["IMAGE", "DIGEST", "RUN"]


def test_cli_and_web_csv_have_the_same_columns(server, capsys, monkeypatch):
    code, out, err = run(query.main, capsys, monkeypatch, server, "--format", "csv", "--page-size", "500")
    assert code == 0, err
    cli_rows = list(csv.reader(io.StringIO(out)))

    http = requests.Session()
    page = http.get(server.url + "/login", timeout=30)
    signed = http.post(server.url + "/login", data={"api_key": server.admin_key, "next": "/explorer",
                                                    "csrf_token": csrf_token(page.text)}, timeout=30)
    assert signed.status_code == 200 and "/explorer" in signed.url
    exported = http.get(server.url + "/explorer.csv", timeout=30)
    assert exported.status_code == 200, exported.text[:300]
    web_rows = list(csv.reader(io.StringIO(exported.text)))

    assert cli_rows[0] == web_rows[0] == EXPLORER_HEADER
    assert sorted(cli_rows[1:]) == sorted(web_rows[1:]) and len(cli_rows) > 3
    pushed = [row[EXPLORER_HEADER.index("pushed_at")] for row in cli_rows[1:]]
    assert "2024-06-11T09:14:02+00:00" in pushed and all(p == "" or p.endswith("+00:00") for p in pushed)


def test_every_printed_time_has_its_offset(server, capsys, monkeypatch):
    code, out, err = run(trace.main, capsys, monkeypatch, server, dataset.CLAMAV)
    assert code == 0, err
    assert "  pushed     2024-06-11T09:14:02+00:00" in out
    received = next(line for line in out.splitlines() if line.strip().startswith("evidence"))
    assert "+00:00 from" in received
    code, out, _ = run(images.main, capsys, monkeypatch, server, "--project", "payments", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows and all(row["pushed_at"].endswith("+00:00") for row in rows)


def test_a_short_digest_as_printed_traces_its_image(server, capsys, monkeypatch):
    for short in (dataset.CLAMAV[:19], dataset.CLAMAV[7:19].upper()):  # sha256: optional, any case
        code, out, err = run(trace.main, capsys, monkeypatch, server, short, "--format", "json")
        assert code == 0, err
        answer = json.loads(out)
        assert answer["digest"] == dataset.CLAMAV and {p["run"]["id"] for p in answer["pushes"]} == {"4711"}


def test_an_ambiguous_prefix_lists_the_candidates(server, capsys, monkeypatch):
    code, out, err = run(trace.main, capsys, monkeypatch, server, SHARED)
    assert code == 1 and out == ""
    assert "matches 2 images; give more digits" in err and TWINS[0] in err and TWINS[1] in err
    code, out, err = run(trace.main, capsys, monkeypatch, server, TWINS[1][:20], "--format", "table")
    assert code == 0 and "twin.1" in out and "twin.0" not in out


def test_a_prefix_shorter_than_12_digits_names_the_minimum(server, capsys, monkeypatch):
    code, _, err = run(trace.main, capsys, monkeypatch, server, "sha256:abcdef01")
    assert code == 1 and "has 8 hex digits; give at least 12" in err
    answer = requests.get(server.url + "/v1/images/sha256:abcdef01/trail",
                          headers=server.headers(server.admin_key), timeout=30)
    assert answer.status_code == 422 and "at least 12" in answer.json()["detail"]


def test_a_reference_without_its_registry_finds_the_one_that_pushed_it(server, capsys, monkeypatch):
    code, out, err = run(trace.main, capsys, monkeypatch, server, "ukhomeofficedigital/acp-clamav-http:0.4.0",
                         "--format", "json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["query"] == "quay.io/ukhomeofficedigital/acp-clamav-http:0.4.0"
    assert answer["digest"] == dataset.CLAMAV


def test_images_the_reader_may_not_see_resolve_as_unknown(server, capsys, monkeypatch):
    sidecar = dataset.SIDECAR[:19]  # pushed by fabrikam: the contoso reader may not see it
    code, out, err = run(trace.main, capsys, monkeypatch, server, sidecar, key=server.contoso_reader)
    assert code == 1 and f"no image you may read has a digest starting with {sidecar}" in err
    code, out, err = run(trace.main, capsys, monkeypatch, server, sidecar)
    assert code == 0 and "sidecar-build" in out  # the admin sees it
    # Without the grant, the registry-less name is not completed to quay.io: Docker's reading stays.
    code, out, err = run(trace.main, capsys, monkeypatch, server, "kiwigrid/k8s-sidecar:1.22.0", "--format", "json",
                         key=server.contoso_reader)
    assert code == 3 and json.loads(out)["pushes"] == []
    code, out, _ = run(trace.main, capsys, monkeypatch, server, "kiwigrid/k8s-sidecar:1.22.0", "--format", "json")
    assert code == 0 and json.loads(out)["query"] == "quay.io/kiwigrid/k8s-sidecar:1.22.0"


def test_an_empty_answer_says_when_permissions_hid_rows():
    # The API's flag (tests/server/test_trace.py checks the server sets it and names no organisation).
    hidden = {"query": "x", "pushes": [], "hidden_by_permissions": True}
    assert "pushes in organisations your permissions hide exist" in trace.render_trail(hidden)
    assert "no push of this image is known" in trace.render_trail({"query": "x", "pushes": []})


def test_an_empty_explorer_answer_says_when_permissions_hid_rows(server, capsys, monkeypatch):
    code, out, err = run(query.main, capsys, monkeypatch, server, "--org", "fabrikam")
    assert code == 0 and "permissions hide" not in out and "0 of 0" not in out, err
    code, out, err = run(query.main, capsys, monkeypatch, server, "--org", "fabrikam", key=server.contoso_reader)
    assert code == 0, err
    assert "0 of 0 rows" in out and "rows in organisations your permissions hide match" in out
    # the web explorer says it too
    http = requests.Session()
    page = http.get(server.url + "/login", timeout=30)
    assert http.post(server.url + "/login", data={"api_key": server.contoso_reader, "next": "/explorer",
                                                  "csrf_token": csrf_token(page.text)}, timeout=30).status_code == 200
    assert 'id="hidden-by-permissions"' in http.get(server.url + "/explorer?org=fabrikam", timeout=30).text
    assert 'id="hidden-by-permissions"' not in http.get(server.url + "/explorer?org=contoso", timeout=30).text


def test_bad_filters_are_refused_naming_the_option(server, capsys, monkeypatch):
    code, _, err = run(query.main, capsys, monkeypatch, server, "--pushed-after", "last week")
    assert code == 2 and "--pushed-after: expected a date like 2024-05-31" in err
    code, _, err = run(query.main, capsys, monkeypatch, server, "--cluster", "c" * 300)
    assert code == 2 and "--cluster: String should have at most 253 characters" in err
    answer = requests.get(server.url + "/v1/query", params={"namespace": "n" * 300},
                          headers=server.headers(server.admin_key), timeout=30)
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["query", "namespace"]
    code, out, err = run(query.main, capsys, monkeypatch, server, "--not-exposed", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["rows"] and not any(row["exposed"] for row in json.loads(out)["rows"])
