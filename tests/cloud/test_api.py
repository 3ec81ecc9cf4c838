"""The cloud API through the real app (TestClient) on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from tests.cloud import scenario
from tests.cloud.support import FIXTURES, ingester, reader


def test_inventory_scan_and_query_round_trip(api):
    from imagetrail.ingest.reports import ingest_report

    for body in scenario.reports():
        ingest_report(api.app.state.sessions, body, ingester())
    inventory = scenario.inventory().model_dump(mode="json")
    answer = api.client.post("/v1/clusters/prod/inventory", json=inventory)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"cluster": "prod", "containers": 6, "exposed": 3, "replaced": 0}
    for name, data in scenario.scans():
        response = api.client.post("/v1/scans", params={"file_name": name}, content=data)
        assert response.status_code == 201, response.text
    page = api.client.get("/v1/query", params={"exposed": "true", "min_severity": "critical"}).json()
    assert page["total"] == 1
    row = page["rows"][0]
    assert row["trail"]["owner_email"] == "alice@contoso.example"
    assert row["vulnerabilities"]["top"][0] == {
        "id": "CVE-2021-36159",
        "severity": "critical",
        "package": "apk-tools",
        "installed_version": "2.10.6-r0",
        "fixed_version": "2.10.7-r0",
    }
    gaps = api.client.get("/v1/coverage/gaps").json()
    assert gaps["total"] == 3
    api.act_as(reader("fabrikam"))
    assert [r["pod"] for r in api.client.get("/v1/query").json()["rows"]] == ["svc"]
    assert api.client.get("/v1/coverage/gaps").json()["total"] == 0


def test_grype_report_records_the_index_relation(api):
    data = (FIXTURES / "grype_chainguard-ruby_image.json").read_bytes()
    response = api.client.post("/v1/scans", params={"file_name": "ruby.json"}, content=data)
    assert response.status_code == 201
    assert response.json()["images"][0]["findings"] == 3
    from sqlalchemy import select

    from imagetrail.store.models.pipeline import ImageRelation

    with api.app.state.sessions() as session:
        relation = session.execute(select(ImageRelation)).scalar_one()
    assert (relation.architecture, relation.source) == ("arm64", "scanner")


def test_bad_scan_is_refused_with_file_and_field_and_nothing_is_stored(api):
    document = json.loads((FIXTURES / "trivy-action_alpine-3.10_image-report.json").read_bytes())
    document["Results"][0]["Vulnerabilities"][0]["PkgName"] = None
    response = api.client.post("/v1/scans", params={"file_name": "broken.json"}, content=json.dumps(document))
    assert response.status_code == 422
    assert response.json()["detail"] == "broken.json: Results[0].Vulnerabilities[0].PkgName is missing"
    assert api.client.get("/v1/coverage").json()["scanners"] == []


def test_bad_inventory_names_the_field(api):
    inventory = scenario.inventory().model_dump(mode="json")
    inventory["containers"][2]["digest"] = "sha256:nothex"
    response = api.client.post("/v1/clusters/prod/inventory", json=inventory)
    assert response.status_code == 422
    assert "containers[2].digest" in response.json()["detail"]
    response = api.client.post(
        "/v1/clusters/staging/inventory", json=scenario.inventory().model_dump(mode="json")
    )
    assert response.status_code == 422 and "the URL names 'staging'" in response.json()["detail"]
    response = api.client.post("/v1/clusters/prod/inventory", content=b'{"cluster": "prod", ')
    assert response.status_code == 422 and "inventory of cluster prod" in response.json()["detail"]


def test_writes_need_a_credential_for_every_organisation(api):
    api.act_as(reader("contoso"))
    response = api.client.post("/v1/scans", params={"file_name": "x.json"}, content=b"{}")
    assert response.status_code == 403
    assert "--org '*'" in response.json()["detail"]


def test_query_parameters_are_validated(api):
    response = api.client.get("/v1/query", params={"min_severity": "severe"})
    assert response.status_code == 422 and "min_severity" in response.json()["detail"]
    response = api.client.get("/v1/query", params={"sort": "owner"})
    assert response.status_code == 422 and "sort must be one of" in response.json()["detail"]


def test_relations_endpoint_validates_and_counts_new_edges(api):
    body = {
        "source": "registry",
        "relations": [
            {
                "index_digest": scenario.API_INDEX,
                "manifest_digest": "sha256:" + "e" * 64,
                "architecture": "arm64",
            }
        ],
    }
    assert api.client.post("/v1/image-relations", json=body).json() == {"received": 1, "new": 1}
    assert api.client.post("/v1/image-relations", json=body).json() == {"received": 1, "new": 0}
    body["relations"][0]["manifest_digest"] = "latest"
    response = api.client.post("/v1/image-relations", json=body)
    assert response.status_code == 422 and "relations[0].manifest_digest" in response.json()["detail"]


def test_one_filter_model_drives_the_api_the_cli_and_the_web_form(api):
    """Every filter of ExplorerFilters is an API parameter, a CLI option and a form input, with its bound."""
    import argparse

    from imagetrail.client.query import add_filter_arguments
    from imagetrail.views.filters import FILTER_FIELDS, FILTER_NAMES
    from imagetrail.web.explorer_view import FORM

    spec = api.app.openapi()
    for path in ("/v1/query", "/v1/query/pipelines", "/v1/coverage/gaps"):
        parameters = {p["name"]: p for p in spec["paths"][path]["get"]["parameters"]}
        assert set(FILTER_NAMES) <= set(parameters), path
    cluster = parameters["cluster"]["schema"]["anyOf"][0]
    assert cluster["maxLength"] == 253 and parameters["cluster"]["description"] == "cluster name"
    parser = argparse.ArgumentParser()
    add_filter_arguments(parser)
    dests = {action.dest for action in parser._actions} - {"help"}
    assert dests == set(FILTER_NAMES) and "--not-exposed" in parser.format_help()
    assert [field["name"] for field in FORM] == list(FILTER_NAMES)
    assert {f["name"]: f["maxlength"] for f in FORM}["repository"] == 512
    assert "digests" not in FILTER_NAMES and len(FILTER_FIELDS) == 15

    too_long = api.client.get("/v1/query/pipelines", params={"pipeline": "p" * 513})
    assert too_long.status_code == 422 and too_long.json()["detail"][0]["loc"] == ["query", "pipeline"]
    bad_time = api.client.get("/v1/coverage/gaps", params={"pushed_before": "soon"})
    assert bad_time.status_code == 422 and bad_time.json()["detail"].startswith("query: pushed_before:")
    dated = api.client.get("/v1/query", params={"pushed_after": "2024-05-01", "exposed": "false"})
    assert dated.status_code == 200, dated.text


def test_cli_tables_fit_the_width_and_keep_the_digest_whole():
    from imagetrail.client.output import Column, table

    digest = "sha256:" + "ab" * 6
    rows = [{"workload": "w" * 70, "image": "registry.example/" + "i" * 60, "digest": digest, "run": "2024.1",
             "owner": "someone@example.com" * 2}]
    columns = [Column("workload"), Column("image", required=True), Column("digest", required=True, whole=True),
               Column("run", required=True), Column("owner")]
    for width in (100, 70, 50):
        lines = table(rows, columns, width=width).splitlines()
        assert max(len(line) for line in lines) <= width, width
        assert digest in lines[1] and {"IMAGE", "DIGEST", "RUN"} <= set(lines[0].split())
    assert "OWNER" not in table(rows, columns, width=50) and "…" in table(rows, columns, width=70)
    wide = table(rows, columns, wide=True, width=50)
    assert "w" * 70 in wide and "OWNER" in wide
