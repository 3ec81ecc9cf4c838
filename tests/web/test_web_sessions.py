"""Server-side web sessions, sign-in CSRF, link sanitising and the API docs setting.

The real app in-process on the real databases (SQLite and PostgreSQL): the session table is
what these tests are about, so they run on both.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from datetime import datetime, timedelta, timezone
from typing import Iterator, List

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from imagetrail.auth import browser_sessions as session_store
from imagetrail.auth.api_keys import create_key, revoke_key
from imagetrail.server.app import create_app
from imagetrail.settings import Settings
from imagetrail.store.db import make_engine, transaction
from imagetrail.store.migrate import upgrade
from imagetrail.store.models.web_session import BrowserSession
from tests.support.migrations import downgrade
from tests.web import dataset
from tests.web.sign_in import csrf_token, links, unsafe_links

SESSION = "imagetrail_session"
SIGN_IN = "imagetrail_sign_in"


@pytest.fixture
def app_settings(database_url) -> Settings:
    engine = make_engine(database_url)
    upgrade(engine)
    engine.dispose()
    return Settings(database_url=database_url)


def _client(settings: Settings, base_url: str = "http://testserver") -> TestClient:
    return TestClient(create_app(settings), base_url=base_url, follow_redirects=False)


@pytest.fixture
def web(app_settings) -> Iterator[TestClient]:
    client = _client(app_settings)
    yield client
    client.app.state.engine.dispose()


def _key(client: TestClient, org: str, scope: str):
    with transaction(client.app.state.sessions) as session:
        return create_key(session, org, scope)


def _login_form(client: TestClient, next_url: str = "/") -> str:
    page = client.get("/login", params={"next": next_url})
    assert page.status_code == 200 and client.cookies.get(SIGN_IN)
    return csrf_token(page.text)


def _sign_in(client: TestClient, key: str, next_url: str = "/explorer"):
    token = _login_form(client, next_url)
    return client.post("/login", data={"api_key": key, "next": next_url, "csrf_token": token})


def _rows(client: TestClient) -> List[BrowserSession]:
    with client.app.state.sessions() as session:
        return list(session.scalars(select(BrowserSession)))


def test_api_key_sign_in_opens_a_server_side_session(web):
    key = _key(web, "contoso", "read")
    answer = _sign_in(web, key.key)
    assert answer.status_code == 303 and answer.headers["location"] == "/explorer"
    cookie = answer.headers["set-cookie"]
    token = web.cookies.get(SESSION)
    assert token and key.key not in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain http here; see the https test
    rows = _rows(web)
    assert [r.id for r in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    assert rows[0].api_key_id == key.id and rows[0].organizations == '["contoso"]' and rows[0].scopes == "read"
    assert token not in repr([(r.id, r.csrf_token, r.subject) for r in rows]), "the database holds no usable token"
    page = web.get("/explorer")
    assert page.status_code == 200 and "api-key · contoso" in page.text


def test_sign_in_needs_the_forms_csrf_token(web):
    key = _key(web, "*", "admin").key
    _login_form(web)
    for token in ("", "0" * 64):
        answer = web.post("/login", data={"api_key": key, "next": "/", "csrf_token": token})
        assert answer.status_code == 403 and "did not come from this site" in answer.text
    # A token from another browser's form does not fit this browser's sign-in cookie.
    other = _client(web.app.state.settings)
    foreign = _login_form(other)
    answer = web.post("/login", data={"api_key": key, "next": "/", "csrf_token": foreign})
    assert answer.status_code == 403 and web.cookies.get(SESSION) is None and _rows(web) == []


def test_sign_out_ends_the_session_on_the_server(web):
    _sign_in(web, _key(web, "*", "admin").key)
    token = web.cookies.get(SESSION)
    page = web.get("/")
    csrf = csrf_token(page.text)
    assert web.post("/logout", data={"csrf_token": "forged"}).status_code == 403
    assert len(_rows(web)) == 1
    answer = web.post("/logout", data={"csrf_token": csrf})
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert _rows(web) == []
    # A copy of the cookie taken before sign-out is worth nothing now.
    replay = _client(web.app.state.settings)
    replay.cookies.set(SESSION, token)
    answer = replay.get("/explorer")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize("column", ["last_seen_at", "expires_at"])
def test_idle_and_absolute_expiry_end_the_session(web, column):
    _sign_in(web, _key(web, "*", "admin").key)
    assert web.get("/").status_code == 200
    settings = web.app.state.settings
    # Idle: no request for longer than the idle limit. Absolute: past the session's end.
    moved = (datetime.now(timezone.utc) - timedelta(minutes=settings.web_session_idle_minutes + 1)
             if column == "last_seen_at" else datetime.now(timezone.utc) - timedelta(seconds=1))
    with transaction(web.app.state.sessions) as session:
        session.execute(update(BrowserSession).values({column: moved}))
    answer = web.get("/explorer")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")
    assert SESSION + '=""' in answer.headers.get("set-cookie", "") or "Max-Age=0" in answer.headers["set-cookie"]
    assert _rows(web) == []


def test_an_organisation_name_cannot_widen_a_session(web):
    _sign_in(web, _key(web, "contoso|fabrikam", "read").key)
    page = web.get("/explorer")
    assert page.status_code == 200 and "api-key · contoso|fabrikam" in page.text
    assert "acp-clamav-http" not in page.text  # no organisation named "contoso" alone


def test_a_flood_of_started_sign_ins_evicts_the_oldest(web, monkeypatch):
    monkeypatch.setattr(session_store, "MAX_PENDING_SIGN_INS", 3)
    factory, settings = web.app.state.sessions, web.app.state.settings
    for n in range(5):
        session_store.begin_sign_in(factory, settings, f"browser-{n}", {"state": str(n)}, "/")
        time.sleep(0.01)  # distinct creation times
    assert session_store.take_sign_in(factory, "browser-0") is None
    assert session_store.take_sign_in(factory, "browser-1") is None
    kept = session_store.take_sign_in(factory, "browser-4")
    assert kept is not None and json.loads(kept.flow) == {"state": "4"}
    assert session_store.take_sign_in(factory, "browser-4") is None, "a flow is used once"


def test_absolute_lifetime_is_set_at_sign_in(web):
    _sign_in(web, _key(web, "*", "admin").key)
    row = _rows(web)[0]
    lifetime = row.expires_at - row.created_at
    assert lifetime == timedelta(hours=web.app.state.settings.web_session_max_hours)


def test_revoking_the_key_ends_its_sessions(web):
    key = _key(web, "contoso", "read")
    _sign_in(web, key.key)
    assert web.get("/explorer").status_code == 200
    with transaction(web.app.state.sessions) as session:
        assert revoke_key(session, key.id)
    assert web.get("/explorer").status_code == 303


def test_keys_that_cannot_read_and_job_tokens_open_no_session(web):
    answer = _sign_in(web, _key(web, "contoso", "ingest").key)
    assert answer.status_code == 403 and "cannot read" in answer.text
    answer = _sign_in(web, "eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.")
    assert answer.status_code == 401 and _rows(web) == []


def test_cookies_are_secure_over_https(app_settings):
    client = _client(app_settings, base_url="https://testserver")
    try:
        page = client.get("/login")
        assert "Secure" in page.headers["set-cookie"] and "SameSite=lax" in page.headers["set-cookie"]
        answer = _sign_in(client, _key(client, "*", "admin").key)
        assert answer.status_code == 303
        assert "Secure" in answer.headers["set-cookie"] and "SameSite=strict" in answer.headers["set-cookie"]
    finally:
        client.app.state.engine.dispose()


def test_sign_in_follows_only_paths_of_this_site(web):
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example/"):
        answer = _sign_in(web, _key(web, "*", "admin").key, target)
        assert answer.status_code == 303 and answer.headers["location"] == "/"


def test_report_urls_never_become_script_links(web):
    """A report whose run and repository URLs are javascript: renders no such link anywhere."""
    admin = {"Authorization": f"Bearer {_key(web, '*', 'admin').key}"}
    build = dataclasses.replace(dataset.BUILDS[0], repo="javascript:alert(2)//x")
    report = dataset.report_for(build, server_url="javascript:alert(3)//")  # no Azure DevOps link to build
    report["context"]["run"]["url"] = "  JavaScript:alert(document.cookie)"
    assert web.post("/v1/reports", json=report, headers=admin).status_code == 201
    page = web.get("/images/" + build.digest, headers=admin)
    assert page.status_code == 200 and build.run_number in page.text
    assert links(page.text) and unsafe_links(page.text) == []
    assert "run-link" not in page.text and "commit-link" not in page.text and "alert(" in page.text


def test_api_docs_are_off_unless_configured(app_settings):
    off = _client(app_settings)
    on = _client(dataclasses.replace(app_settings, api_docs=True))
    try:
        assert off.get("/docs").status_code == 404 and off.get("/redoc").status_code == 404
        assert off.get("/openapi.json").status_code == 200
        assert on.get("/docs").status_code == 200
    finally:
        off.app.state.engine.dispose()
        on.app.state.engine.dispose()


def test_migration_0006_matches_the_models_and_downgrades(app_settings):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import inspect

    from imagetrail.store.db import Base

    ours = {"web_sessions", "web_sign_ins"}
    engine = make_engine(app_settings.database_url)
    try:
        with engine.connect() as connection:
            diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert [d for d in diffs if ours & {getattr(part, "name", None) for part in _flatten(d)}] == []
        downgrade(engine, "0005")
        with engine.connect() as connection:
            assert ours.isdisjoint(inspect(connection).get_table_names())
        upgrade(engine)
        with engine.connect() as connection:
            assert ours <= set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


def _flatten(diff):
    """The schema objects named in one autogenerate difference (tuples, possibly nested in lists)."""
    for part in diff if isinstance(diff, (list, tuple)) else [diff]:
        if isinstance(part, (list, tuple)):
            yield from _flatten(part)
        else:
            yield getattr(part, "table", part)
            yield part
