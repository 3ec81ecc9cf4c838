"""Single sign-on end to end: the real `imagetrail serve`, headless Chromium and a local OpenID
Connect provider (tests/support/oidc_provider.py) that checks state, nonce, PKCE S256 and the
client's authentication, through the real redirect flow."""

from __future__ import annotations

import csv
import io
import re
import time
from typing import Iterator
from urllib.parse import urlsplit

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.oidc_provider import LocalOidcProvider, new_key
from tests.web import dataset
from tests.web.conftest import screenshot
from tests.web.sign_in import (
    SsoServer,
    approve,
    links,
    serving_with_sso,
    sso_in_browser,
    start_sso,
    unsafe_links,
    well_behaved,
)

pytestmark = pytest.mark.e2e

USERS = {
    "alice": {"name": "Alice Example", "email": "alice@contoso.example", "groups": ["imagetrail-contoso-readers"]},
    "bob": {"name": "Bob Sales", "groups": ["sales", "all-staff"]},
    "carol": {"name": "Carol Ops", "groups": ["ops-admins"]},
}
GRANTS = "imagetrail-contoso-readers=contoso:read,ops-admins=*:admin"


@pytest.fixture(scope="module")
def sso_server(tmp_path_factory) -> Iterator[SsoServer]:
    with LocalOidcProvider(users=USERS) as provider:
        env = {"IMAGETRAIL_SSO_PROVIDER": "oidc", "IMAGETRAIL_SSO_ISSUER": provider.issuer,
               "IMAGETRAIL_SSO_GRANTS": GRANTS}
        with serving_with_sso(tmp_path_factory, provider, env) as server:
            yield server


@pytest.fixture
def provider(sso_server) -> Iterator[LocalOidcProvider]:
    yield from well_behaved(sso_server.provider)


def _approve(http: requests.Session, server: SsoServer, authorize_url: str, user: str) -> str:
    assert http.get(authorize_url, timeout=30).status_code == 200  # the provider's sign-in form
    return approve(server.provider, authorize_url, user)


def _start(http: requests.Session, server: SsoServer, next_url: str = "/explorer") -> str:
    return start_sso(http, server.url, next_url)


def test_chromium_signs_in_through_the_provider_and_out_again(sso_server, provider, browser):
    browser.get(sso_server.url + "/explorer")
    assert "/login" in browser.current_url
    sso_in_browser(browser, provider, "alice")
    WebDriverWait(browser, 15).until(lambda d: urlsplit(d.current_url).path == "/explorer")
    assert "Alice Example · contoso" in browser.find_element(By.CSS_SELECTOR, ".who").text
    assert "acp-clamav-http" in browser.page_source and "fabrikam" not in browser.page_source
    screenshot(browser, "11-sso-signed-in")
    cookie = browser.get_cookie("imagetrail_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    # What the provider saw: PKCE S256, state and nonce at authorize; the verifier and the client's
    # own authentication at the token endpoint; and nothing it had to refuse.
    authorize = provider.authorize_requests[-1]
    assert authorize["code_challenge_method"] == "S256" and authorize["state"] and authorize["nonce"]
    assert authorize["redirect_uri"] == sso_server.url + "/auth/callback"
    token_request = provider.token_requests[-1]
    assert token_request["code_verifier"] and token_request["basic_auth"] is True
    assert provider.errors == []
    # Alice reads contoso through the same pages as a key holder would.
    browser.get(sso_server.url + "/images/" + dataset.SIDECAR)
    assert "Kim Lee" not in browser.page_source
    # Sign out: the session ends on the server, so a copy of the cookie is worthless.
    browser.find_element(By.CSS_SELECTOR, ".who button").click()
    WebDriverWait(browser, 10).until(lambda d: "/login" in d.current_url)
    stolen = requests.get(sso_server.url + "/explorer", cookies={"imagetrail_session": cookie["value"]},
                          allow_redirects=False, timeout=30)
    assert stolen.status_code == 303 and stolen.headers["location"].startswith("/login")


def test_a_person_whose_groups_map_to_nothing_gets_no_session(sso_server, provider, browser):
    browser.get(sso_server.url + "/login")
    sso_in_browser(browser, provider, "bob")
    notice = WebDriverWait(browser, 15).until(lambda d: d.find_elements(By.ID, "no-access"))[0]
    assert "Bob Sales signed in, but none of your roles or groups" in notice.text
    assert {li.text for li in browser.find_elements(By.CSS_SELECTOR, "#seen-values li")} == {"sales", "all-staff"}
    assert browser.get_cookie("imagetrail_session") is None
    screenshot(browser, "12-sso-no-access")
    browser.get(sso_server.url + "/explorer")
    assert "/login" in browser.current_url


def test_an_admin_group_sees_every_organisation(sso_server, provider):
    http = requests.Session()
    callback = _approve(http, sso_server, _start(http, sso_server, "/coverage"), "carol")
    page = http.get(callback, timeout=30)
    assert page.status_code == 200 and 'http-equiv="refresh"' in page.text and "/coverage" in page.text
    coverage = http.get(sso_server.url + "/coverage", allow_redirects=False, timeout=30)
    assert coverage.status_code == 200 and "fabrikam" in coverage.text and "Carol Ops · all organisations" in coverage.text
    assert provider.errors == []


def test_the_callback_refuses_what_this_browser_did_not_start(sso_server, provider):
    victim, attacker = requests.Session(), requests.Session()
    _start(victim, sso_server)
    # Login CSRF: the attacker's own code and state, delivered to the victim's browser.
    attackers_callback = _approve(attacker, sso_server, _start(attacker, sso_server), "carol")
    answer = victim.get(attackers_callback, timeout=30)
    assert answer.status_code == 400 and "state does not match" in answer.text
    assert "imagetrail_session" not in victim.cookies
    # A browser that started no sign-in at all.
    answer = requests.get(attackers_callback, timeout=30)
    assert answer.status_code == 400 and "not started in this browser" in answer.text
    # Its state tampered with.
    http = requests.Session()
    callback = _approve(http, sso_server, _start(http, sso_server), "alice")
    tampered = re.sub(r"state=[^&]+", "state=forged", callback)
    assert http.get(tampered, timeout=30).status_code == 400 and "imagetrail_session" not in http.cookies
    # The flow was used up by the attempt: the genuine callback cannot be replayed after it either.
    assert http.get(callback, timeout=30).status_code == 400 and "imagetrail_session" not in http.cookies


def test_a_callback_is_used_once(sso_server, provider):
    http = requests.Session()
    callback = _approve(http, sso_server, _start(http, sso_server), "alice")
    assert http.get(callback, timeout=30).status_code == 200 and "imagetrail_session" in http.cookies
    replay = requests.Session()
    replay.cookies.update({"imagetrail_sign_in": http.cookies.get("imagetrail_sign_in") or "x"})
    assert replay.get(callback, timeout=30).status_code == 400 and "imagetrail_session" not in replay.cookies


def test_starting_sign_in_needs_the_pages_csrf_token(sso_server):
    http = requests.Session()
    http.get(sso_server.url + "/login", timeout=30)
    answer = http.post(sso_server.url + "/login/sso", data={"csrf_token": "0" * 64}, allow_redirects=False,
                       timeout=30)
    assert answer.status_code == 403 and "did not come from this site" in answer.text


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"nonce": "replayed-nonce"}, "nonce does not match"),
        ({"aud": "another-client"}, "not valid: Audience doesn"),
        ({"iss": "http://127.0.0.1:9/elsewhere"}, "not valid: Invalid issuer"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "id_token has expired"),
        ({"aud": ["another-client", "CLIENT"]}, "several clients"),
        ("attacker key", "not valid: Signature verification failed"),
    ],
)
def test_id_tokens_that_fail_a_check_open_no_session(sso_server, provider, overrides, message):
    if overrides == "attacker key":
        provider.signing_key = new_key("attacker")
    else:
        provider.id_token_overrides = {
            k: [sso_server.client.client_id if a == "CLIENT" else a for a in v] if isinstance(v, list) else v
            for k, v in overrides.items()
        }
    http = requests.Session()
    answer = http.get(_approve(http, sso_server, _start(http, sso_server), "carol"), timeout=30)
    assert answer.status_code == 400 and message in answer.text.replace("&#39;", "'"), answer.text[-800:]
    assert "imagetrail_session" not in http.cookies
    assert provider.errors == []  # the provider was content: the relying party did the refusing


def test_a_reports_script_url_is_never_a_link_in_the_explorer(sso_server):
    """A running image whose only trail is a hostile report: its run URL stays text."""
    hostile = dataset.Build("evilcorp", "evil", "evil-ci", "1", "666", "666", "javascript:alert(2)//x",
                            "0badc0de" * 5, ' =HYPERLINK("https://evil.example")', "mallory@evil.example",
                            ["docker.io/istio/proxyv2:1.0"], dataset.ISTIO_BASE, "2024-06-12T07:40:55Z")
    report = dataset.report_for(hostile, server_url="javascript:alert(3)//")
    report["context"]["run"]["url"] = "javascript:alert(1)"
    admin = {"Authorization": f"Bearer {sso_server.admin_key}"}
    assert requests.post(sso_server.url + "/v1/reports", json=report, headers=admin, timeout=30).status_code == 201
    page = requests.get(sso_server.url + "/explorer", headers=admin, timeout=30)
    assert page.status_code == 200 and "evil-ci #666" in page.text, "the hostile trail is on the page"
    assert links(page.text) and unsafe_links(page.text) == []
    # The CSV export: the owner's name is a formula (ingest trims the space before it), and stays text.
    exported = requests.get(sso_server.url + "/explorer.csv", headers=admin, timeout=30)
    row = next(r for r in csv.DictReader(io.StringIO(exported.text)) if r["pipeline"] == "evil-ci")
    assert row["owner"] == "'=HYPERLINK(\"https://evil.example\")" and row["run_url"] == "javascript:alert(1)"
