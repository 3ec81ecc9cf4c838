"""Single sign-on with Microsoft Entra ID, through msal, end to end.

msal accepts only https authorities of Entra's shape (``https://host/{tenant}``) and reads the
tenant's discovery document at ``{authority}/v2.0/.well-known/openid-configuration``. So the
local provider here lays out Entra's v2.0 endpoints over https, with a certificate from a test
CA: the server trusts that CA through ``REQUESTS_CA_BUNDLE`` (the standard setting of the
``requests`` library msal uses) and Chromium through ``--ignore-certificate-errors-spki-list``
for that one key. Nothing in the production code path is switched off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator
from urllib.parse import urlsplit

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from imagetrail.settings import Settings
from imagetrail.web.sso import EntraProvider, SsoFailed
from tests.support.oidc_provider import LocalCertificate, LocalOidcProvider, make_certificate, new_key
from tests.web.conftest import screenshot
from tests.web.sign_in import SsoServer, approve, serving_with_sso, sso_in_browser, start_sso, well_behaved

pytestmark = pytest.mark.e2e

READER_GROUP = "5d0f7a1e-3c2b-4a9d-8e6f-1b2c3d4e5f60"  # a group object id, as Entra puts in "groups"
USERS = {
    "dana": {"name": "Dana Reader", "roles": ["ImageTrail.Contoso.Read"]},
    "erin": {"name": "Erin Admin", "groups": [READER_GROUP], "roles": ["ImageTrail.Admin"]},
    # More groups than fit in a token: Entra leaves "groups" out and points to Graph instead.
    "frank": {"name": "Frank Many", "_claim_names": {"groups": "src1"},
              "_claim_sources": {"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/x/getMemberObjects"}}},
}
GRANTS = f"ImageTrail.Contoso.Read=contoso:read,{READER_GROUP}=fabrikam:read,ImageTrail.Admin=*:admin"


@dataclass
class EntraServer(SsoServer):
    certificate: LocalCertificate


@pytest.fixture(scope="module")
def entra(tmp_path_factory) -> Iterator[EntraServer]:
    certificate = make_certificate(tmp_path_factory.mktemp("entra-ca"))
    with LocalOidcProvider(users=USERS, layout="entra", certificate=certificate,
                           auth_methods=("client_secret_post", "client_secret_basic")) as provider:
        env = {
            "IMAGETRAIL_SSO_PROVIDER": "entra",
            "IMAGETRAIL_ENTRA_AUTHORITY_BASE": provider.base,
            "IMAGETRAIL_SSO_ENTRA_TENANT": provider.tenant,
            "IMAGETRAIL_SSO_GRANTS": GRANTS,
            "REQUESTS_CA_BUNDLE": str(certificate.ca_file),
        }
        with serving_with_sso(tmp_path_factory, provider, env) as server:
            yield EntraServer(**vars(server), certificate=certificate)


@pytest.fixture
def provider(entra) -> Iterator[LocalOidcProvider]:
    yield from well_behaved(entra.provider)


def _sign_in(entra: EntraServer, user: str) -> requests.Response:
    """The whole flow without a browser; returns the callback's answer."""
    http = requests.Session()
    callback = approve(entra.provider, start_sso(http, entra.url), user, verify=str(entra.certificate.ca_file))
    answer = http.get(callback, timeout=30)
    answer.signed_in = "imagetrail_session" in http.cookies  # type: ignore[attr-defined]
    return answer


def test_chromium_signs_in_with_entra_through_msal(entra, provider, browser_factory):
    browser = browser_factory(flags=(f"--ignore-certificate-errors-spki-list={entra.certificate.spki_sha256}",))
    browser.get(entra.url + "/explorer")
    assert browser.find_element(By.ID, "sso-sign-in").text == "Sign in with Microsoft"
    sso_in_browser(browser, provider, "dana")
    WebDriverWait(browser, 15).until(lambda d: urlsplit(d.current_url).path == "/explorer")
    assert "Dana Reader · contoso" in browser.find_element(By.CSS_SELECTOR, ".who").text
    assert "acp-clamav-http" in browser.page_source and "k8s-sidecar" not in browser.page_source
    screenshot(browser, "13-entra-signed-in")
    # msal's requests, as Entra receives them: PKCE S256, state, nonce; then the code with the
    # verifier, the secret in the body (client_secret_post) and client_info=1.
    authorize = provider.authorize_requests[-1]
    assert authorize["code_challenge_method"] == "S256" and authorize["state"] and authorize["nonce"]
    token_request = provider.token_requests[-1]
    assert token_request["basic_auth"] is False and token_request["client_info"] == "1"
    assert token_request["code_verifier"] and "openid" in token_request["scope"].split()
    assert provider.errors == []


def test_app_roles_and_groups_map_to_organisations_and_scopes(entra, provider):
    erin = _sign_in(entra, "erin")  # a fabrikam reader group and the admin app role: admin wins
    assert erin.status_code == 200 and erin.signed_in
    frank = _sign_in(entra, "frank")
    assert frank.status_code == 403 and not frank.signed_in
    assert "too many groups" in frank.text and "app role" in frank.text
    assert provider.errors == []


@pytest.mark.parametrize(
    "misbehaviour, message",
    [
        ("attacker key", "not valid: Signature verification failed"),  # msal does not check signatures
        ({"nonce": "not-what-msal-sent"}, "did not match this sign-in"),
        ({"aud": "another-app"}, "not valid: Audience doesn't match"),  # msal lets this one through
    ],
)
def test_entra_id_tokens_that_fail_a_check_open_no_session(entra, provider, misbehaviour, message):
    if misbehaviour == "attacker key":
        provider.signing_key = new_key("attacker")
    else:
        provider.id_token_overrides = misbehaviour
    answer = _sign_in(entra, "dana")
    assert answer.status_code == 400 and message in answer.text.replace("&#39;", "'"), answer.text[-600:]
    assert not answer.signed_in


def test_msal_refuses_a_plain_http_authority():
    """msal takes only https authorities: a misconfigured one is a clear error, not a crash."""
    settings = Settings(sso_provider="entra", sso_client_id="c", sso_client_secret="s", sso_entra_tenant="t",
                        entra_authority_base="http://127.0.0.1:9")
    with pytest.raises(SsoFailed, match="IMAGETRAIL_SSO_ENTRA_TENANT") as failure:
        EntraProvider(settings).begin("http://127.0.0.1:8080/auth/callback")
    assert failure.value.status_code == 502
