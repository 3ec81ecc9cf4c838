"""Fuzzing the registry endpoints from their OpenAPI description: no input gives a server error."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.server.conftest import new_key


@pytest.fixture
def database_url(sqlite_url):
    return sqlite_url


@pytest.fixture
def fuzz_target(client):
    return schemathesis.openapi.from_asgi("/openapi.json", client.app), new_key(client, "*", "admin")


@pytest.fixture
def fuzz_schema(fuzz_target):
    return fuzz_target[0]


fuzz = schemathesis.pytest.from_fixture("fuzz_schema").include(
    path_regex=r"^/v1/(registry-events|coverage/untraced-pushes)$")


@fuzz.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzing_the_registry_endpoints_finds_no_server_error(case, fuzz_target):
    case.call_and_validate(headers=fuzz_target[1], checks=[not_a_server_error])
