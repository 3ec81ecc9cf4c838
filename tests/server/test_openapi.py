"""The OpenAPI document: kept in docs/openapi.json, and used to fuzz the API (no 5xx)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.server.conftest import new_key
from tests.server.reports import ado_report, body

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


@pytest.fixture
def fuzz_target(client):
    headers = new_key(client, "*", "admin")
    assert client.post("/v1/reports", json=body(ado_report()), headers=headers).status_code == 201
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    return schema, headers


# Only this area's endpoints: the cloud and web routers are fuzzed by their owners' tests.
fuzz = schemathesis.pytest.from_fixture("fuzz_schema").include(
    path_regex=r"^/(healthz|readyz|v1/reports|v1/trail|v1/images(/\{digest\}/trail)?)$")


@pytest.fixture
def fuzz_schema(fuzz_target):
    return fuzz_target[0]


@fuzz.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzing_the_api_finds_no_server_error(case, fuzz_target):
    _, headers = fuzz_target
    case.call_and_validate(headers=headers, checks=[not_a_server_error])
