"""POST /v1/reports on SQLite and on the real PostgreSQL: idempotent, transactional, validated."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from imagetrail.report import Platform
from tests.server.conftest import new_key
from tests.server.reports import ado_report, body, digest, push

COUNTED = ["reports", "organizations", "projects", "pipelines", "repositories", "people", "runs", "jobs",
           "images", "image_references", "pushes", "image_relations"]


def counts(client) -> dict:
    with client.app.state.engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in COUNTED}


def test_new_report_is_stored_with_every_fact(client, admin):
    index = digest("index")
    report = ado_report(pushes=[push("127.0.0.1:5000/web/app:1.0", index,
                                     platforms=[Platform(digest("amd64"), "linux", "amd64"),
                                                Platform(digest("arm64"), "linux", "arm64", "v8")]),
                                push("127.0.0.1:5000/web/app:latest", index)])
    response = client.post("/v1/reports", json=body(report), headers=admin)
    assert response.status_code == 201, response.text
    assert response.json() == {"status": "created", "reportId": report.report_id, "pushes": 2}
    assert counts(client) == {"reports": 1, "organizations": 1, "projects": 1, "pipelines": 1, "repositories": 1,
                              "people": 1, "runs": 1, "jobs": 1, "images": 3, "image_references": 2, "pushes": 2,
                              "image_relations": 2}
    with client.app.state.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT body, identity_kind FROM reports")).one()
        run = conn.execute(sa.text('SELECT external_id, "commit", branch FROM runs')).one()
    stored_body = stored[0] if isinstance(stored[0], dict) else json.loads(stored[0])
    assert stored_body == body(report)
    assert stored[1] == "api-key"
    assert tuple(run) == ("345", "a" * 40, "refs/heads/main")


def test_resent_report_changes_nothing(client, admin):
    report = ado_report()
    assert client.post("/v1/reports", json=body(report), headers=admin).status_code == 201
    before = counts(client)
    again = client.post("/v1/reports", json=body(report), headers=admin)
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert counts(client) == before


def test_reports_of_other_jobs_share_dimension_rows(client, admin):
    for job in ("Build", "Test", "Publish"):
        assert client.post("/v1/reports", json=body(ado_report(job=job)), headers=admin).status_code == 201
    c = counts(client)
    assert (c["reports"], c["runs"], c["jobs"], c["organizations"], c["people"]) == (3, 1, 3, 1, 1)


def test_run_facts_missing_from_the_first_report_are_filled_later(client, admin):
    first = ado_report(job="Build", commit=None)
    second = ado_report(job="Test")
    assert client.post("/v1/reports", json=body(first), headers=admin).status_code == 201
    assert client.post("/v1/reports", json=body(second), headers=admin).status_code == 201
    with client.app.state.engine.connect() as conn:
        assert conn.execute(sa.text('SELECT "commit" FROM runs')).scalar_one() == "a" * 40


def _install_failing_trigger(client, reference: str) -> None:
    """A real database error on the report's last push row, raised by the database itself."""
    with client.app.state.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(sa.text(
                "CREATE TRIGGER fail_push BEFORE INSERT ON pushes WHEN NEW.reference = :ref "
                "BEGIN SELECT RAISE(ABORT, 'injected failure'); END".replace(":ref", f"'{reference}'")))
        else:
            conn.execute(sa.text(
                "CREATE FUNCTION fail_push() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.reference = '{reference}' THEN RAISE EXCEPTION 'injected failure'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"))
            conn.execute(sa.text("CREATE TRIGGER fail_push BEFORE INSERT ON pushes FOR EACH ROW "
                                 "EXECUTE FUNCTION fail_push()"))


def _drop_failing_trigger(client) -> None:
    with client.app.state.engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER fail_push" + ("" if conn.dialect.name == "sqlite" else " ON pushes")))


def test_a_failure_on_the_last_row_leaves_nothing_behind(client, admin):
    pushes = [push(f"127.0.0.1:5000/web/app:{i}", digest(f"p{i}")) for i in range(5)]
    report = ado_report(pushes=pushes)
    _install_failing_trigger(client, "127.0.0.1:5000/web/app:4")
    client_no_raise = type(client)(client.app, raise_server_exceptions=False)
    failed = client_no_raise.post("/v1/reports", json=body(report), headers=admin)
    assert failed.status_code >= 500
    assert all(n == 0 for n in counts(client).values()), counts(client)
    _drop_failing_trigger(client)
    resent = client.post("/v1/reports", json=body(report), headers=admin)
    assert resent.status_code == 201
    assert counts(client)["pushes"] == 5


@pytest.mark.parametrize("mutate, field", [
    (lambda b: b["pushes"][0].__setitem__("digest", "sha256:xyz"), "pushes[0].digest: 'sha256:xyz'"),
    (lambda b: b["context"].__setitem__("system", "jenkins"), "context.system: 'jenkins'"),
    (lambda b: b["context"]["run"].pop("id"), "context.run: 'id' is a required property"),
    (lambda b: b.__setitem__("unexpected", 1), "(report): Additional properties"),
    (lambda b: b["pushes"][0].__setitem__("pushedAt", "yesterday"), "pushes[0].pushedAt: 'yesterday'"),
])
def test_schema_violations_name_the_field(client, admin, mutate, field):
    report = ado_report()
    data = body(report)
    mutate(data)
    response = client.post("/v1/reports", json=data, headers=admin)
    assert response.status_code == 422
    assert response.json()["detail"].startswith(field), response.json()


def test_the_fourth_push_is_named_by_its_index(client, admin):
    data = body(ado_report(pushes=[push(f"127.0.0.1:5000/web/app:{i}", digest(str(i))) for i in range(5)]))
    data["pushes"][3]["digest"] = "sha256:xyz"
    detail = client.post("/v1/reports", json=data, headers=admin).json()["detail"]
    assert detail.startswith("pushes[3].digest: 'sha256:xyz' does not match")


def test_report_id_must_match_the_content(client, admin):
    data = body(ado_report())
    data["reportId"] = digest("something else")
    response = client.post("/v1/reports", json=data, headers=admin)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("reportId: ")


def test_the_report_id_of_a_fixed_report_never_changes():
    """The reportId is a contract with every collector already deployed: the same job's report must keep its
    id across server and collector versions (non-ASCII names, a missing digest, pushes out of order)."""
    from imagetrail.report import compute_report_id

    report = {"context": {"system": "azure-devops", "organization": {"id": None, "name": "Contoso \u00dcn\u00efcode"},
                          "project": {"id": "p1"}, "pipeline": {"id": "12"}, "run": {"id": "420", "attempt": 2},
                          "job": {"name": "Build \u2603"}},
              "pushes": [{"reference": "r.io/b:1", "digest": None},
                         {"reference": "r.io/a:1", "digest": "sha256:" + "a" * 64},
                         {"reference": "r.io/a:1", "digest": "sha256:" + "0" * 64}]}
    assert compute_report_id(report) == "sha256:997c50543d1b9ff6339045b1a9ecab9d314a0306ef6f7f1f96432a0a80026290"


@pytest.mark.parametrize("raw", [b"{not json", json.dumps(body(ado_report())).encode()[:-40], b"\xff\xfe",
                                 b""])
def test_bodies_that_are_not_json_are_400(client, admin, raw):
    response = client.post("/v1/reports", content=raw, headers={**admin, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert "not JSON" in response.json()["detail"]


def test_oversized_reports_are_413(make_client):
    client = make_client(max_report_bytes=2000)
    headers = new_key(client, "*", "admin")
    data = body(ado_report(pushes=[push(f"127.0.0.1:5000/web/app:{i}", digest(str(i))) for i in range(20)]))
    response = client.post("/v1/reports", json=data, headers=headers)
    assert response.status_code == 413
    assert "IMAGETRAIL_MAX_REPORT_BYTES" in response.json()["detail"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        raw = json.dumps(data).encode()
        for i in range(0, len(raw), 500):
            yield raw[i:i + 500]

    streamed = client.post("/v1/reports", content=chunks(), headers={**headers, "Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert counts(client)["reports"] == 0


def test_a_push_without_digest_is_kept_with_its_error(client, admin):
    report = ado_report(pushes=[push("127.0.0.1:5000/web/app:1.0", None)])
    assert client.post("/v1/reports", json=body(report), headers=admin).status_code == 201
    with client.app.state.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT digest, digest_error FROM pushes")).one()
    assert row[0] is None and row[1] == "the registry did not answer"
