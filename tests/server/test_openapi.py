"""The OpenAPI document: kept in docs/openapi.json (tests/server/test_fuzz.py fuzzes it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
OWN_PATHS = ("/healthz", "/readyz", "/v1/reports", "/v1/trail", "/v1/images", "/v1/images/{digest}/trail")


def render(document: dict) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


@pytest.fixture
def database_url(sqlite_url):
    return sqlite_url


def test_docs_openapi_json_is_up_to_date(client):
    served = client.get("/openapi.json").json()
    assert set(OWN_PATHS) <= set(served["paths"])
    assert DOC.read_text() == render(served), (
        "docs/openapi.json is stale; regenerate it with: PYTHONPATH=src python3 -c "
        "\"import json; from imagetrail.server.app import create_app; "
        "print(json.dumps(create_app().openapi(), indent=2, sort_keys=True))\" > docs/openapi.json")


def test_report_body_schema_is_the_report_contract(client):
    served = client.get("/openapi.json").json()
    schema = served["paths"]["/v1/reports"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["required"]) == {"schemaVersion", "reportId", "context", "pushes"}
