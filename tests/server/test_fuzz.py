"""Schemathesis over every route: no input, however odd, gets a 5xx (issue 9, "What to build" 4).

API routes are fuzzed from the served OpenAPI document; the web explorer's pages and forms are
not in it, so they are described below as a small OpenAPI document of their own (query strings
and urlencoded forms, every value free text). Both run on SQLite and PostgreSQL, on a database
holding a report, a scan and a cluster inventory, with the remediation client pointed at the
local Azure DevOps stand-in.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.cloud.support import FIXTURES
from tests.server.conftest import new_key
from tests.server.reports import ado_report, body, push
from tests.support.azure_devops import AzureDevOpsServer

PAT = "fuzz-pat-0123456789"
MANIFEST = "sha256:86abe662dfa3746038eea6b0db91092b0767d78b8b8938a343d614cd1579adc2"
EXAMPLES = 12

FILTERS = ["exposed", "cluster", "namespace", "min_severity", "cve", "fix_available", "registry", "repository",
           "org", "project", "pipeline", "pushed_after", "pushed_before", "page", "page_size", "sort"]


def _query(*names: str) -> list:
    return [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in names]


def _form(*names: str) -> dict:
    properties = {n: {"type": "string"} for n in names}
    return {"required": True, "content": {"application/x-www-form-urlencoded": {
        "schema": {"type": "object", "properties": properties}}}}


ANY = {"default": {"description": "any answer but a server error"}}
WEB_DOCUMENT = {
    "openapi": "3.0.3",
    "info": {"title": "ImageTrail web explorer (test description)", "version": "1"},
    "paths": {
        "/login": {"get": {"parameters": _query("next"), "responses": ANY},
                   "post": {"requestBody": _form("api_key", "next", "csrf_token"), "responses": ANY}},
        "/logout": {"post": {"requestBody": _form("csrf_token"), "responses": ANY}},
        "/": {"get": {"responses": ANY}},
        "/search": {"get": {"parameters": _query("q"), "responses": ANY}},
        "/images/{digest}": {"get": {"parameters": [{"name": "digest", "in": "path", "required": True,
                                                      "schema": {"type": "string", "minLength": 1}}],
                                     "responses": ANY}},
        "/explorer": {"get": {"parameters": _query(*FILTERS), "responses": ANY}},
        "/explorer.csv": {"get": {"parameters": _query(*FILTERS), "responses": ANY}},
        "/remediations/new": {"get": {"parameters": _query("row", "min_severity", "cve", "fix_available"),
                                      "responses": ANY}},
        "/remediations": {"post": {"requestBody": _form("row", "csrf_token", "min_severity", "cve"),
                                   "responses": ANY}},
        "/coverage": {"get": {"parameters": _query("page"), "responses": ANY}},
    },
}


def _inventory() -> bytes:
    container = {"namespace": "web", "pod": "app-1", "workload_kind": "Deployment", "workload_name": "app",
                 "container": "app", "container_kind": "container", "image": "cgr.dev/chainguard/ruby:latest",
                 "digest": MANIFEST, "exposure": [{"reason": "LoadBalancer", "address": "203.0.113.7"}]}
    return json.dumps({"cluster": "prod", "source": "file", "pods": 1, "containers": [container]}).encode()


@pytest.fixture
def fuzz_target(make_client):
    with AzureDevOpsServer("contoso", PAT) as devops:
        client = make_client(azure_devops_pat=PAT, azure_devops_server_urls=[devops.url])
        headers = new_key(client, "*", "admin")
        report = ado_report(pushes=[push("cgr.dev/chainguard/ruby:latest", MANIFEST)])
        report.context.server_url = devops.url + "/"  # work items go to the stand-in
        seeded = [
            client.post("/v1/reports", json=body(report), headers=headers),
            client.post("/v1/scans", params={"file_name": "ruby.json"}, headers=headers,
                        content=(FIXTURES / "grype_chainguard-ruby_image.json").read_bytes()),
            client.post("/v1/clusters/prod/inventory", content=_inventory(), headers=headers),
        ]
        assert [a.status_code for a in seeded] == [201, 201, 200], [a.text for a in seeded]
        api = schemathesis.openapi.from_asgi("/openapi.json", client.app)
        web = schemathesis.openapi.from_dict(WEB_DOCUMENT)
        web.app = client.app
        yield {"api": api, "web": web, "headers": headers}


@pytest.fixture
def api_schema(fuzz_target):
    return fuzz_target["api"]


@pytest.fixture
def web_schema(fuzz_target):
    return fuzz_target["web"]


fuzz_api = schemathesis.pytest.from_fixture("api_schema")
fuzz_web = schemathesis.pytest.from_fixture("web_schema")


@fuzz_api.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_api_input_is_a_server_error(case, fuzz_target):
    case.call_and_validate(headers=fuzz_target["headers"], checks=[not_a_server_error])


@fuzz_web.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_web_input_is_a_server_error(case, fuzz_target):
    case.call_and_validate(headers=fuzz_target["headers"], checks=[not_a_server_error])
