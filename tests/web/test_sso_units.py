"""Units of web sign-in: grant mapping, SSO settings, the OIDC client's checks, the output guards."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from imagetrail.auth.sso_grants import NoAccess, principal_for
from imagetrail.client.output import csv_text
from imagetrail.sanitize import safe_href, safe_url
from imagetrail.services.remediation_plan import _run_link
from imagetrail.settings import Settings, SettingsError, SsoGrant
from imagetrail.views.trail import Trail
from imagetrail.web.sso import OidcProvider, SsoFailed, _check_endpoint
from tests.support.oidc_provider import LocalIssuer, LocalOidcProvider
from tests.web.sign_in import approve

TEMPLATES = Path(__file__).resolve().parents[2] / "src" / "imagetrail" / "web" / "templates"


def _settings(grants: str, provider: str = "oidc", **env: str) -> Settings:
    base = {"IMAGETRAIL_SSO_PROVIDER": provider, "IMAGETRAIL_SSO_CLIENT_ID": "c", "IMAGETRAIL_SSO_CLIENT_SECRET": "s",
            "IMAGETRAIL_SSO_ISSUER": "https://id.example", "IMAGETRAIL_SSO_ENTRA_TENANT": "t",
            "IMAGETRAIL_SSO_GRANTS": grants}
    return Settings.from_env({**base, **env})


def test_grants_parse_and_name_the_variable_when_wrong():
    settings = _settings("readers=contoso|fabrikam:read,ops=*:admin")
    assert settings.sso_grants == [SsoGrant("readers", ["contoso", "fabrikam"], ["read"]),
                                   SsoGrant("ops", ["*"], ["admin"])]
    for bad in ("readers=contoso", "readers=:read", "=contoso:read", "readers=contoso:ingest"):
        with pytest.raises(SettingsError, match="IMAGETRAIL_SSO_GRANTS"):
            _settings(bad)
    with pytest.raises(SettingsError, match="IMAGETRAIL_SSO_ISSUER"):
        Settings.from_env({"IMAGETRAIL_SSO_PROVIDER": "oidc", "IMAGETRAIL_SSO_CLIENT_ID": "c",
                           "IMAGETRAIL_SSO_CLIENT_SECRET": "s", "IMAGETRAIL_SSO_GRANTS": "a=b:read"})
    with pytest.raises(SettingsError, match="one of entra, oidc"):
        _settings("a=b:read", provider="saml")


@pytest.mark.parametrize(
    "values, organizations, scopes",
    [
        (["readers"], {"contoso"}, {"read"}),
        (["readers", "fixers"], {"contoso"}, {"read", "remediate"}),
        # Different scopes on different organisations: only what all of them have is kept.
        (["readers", "fab-fixers"], {"contoso", "fabrikam"}, {"read"}),
        (["ops"], None, {"admin"}),
        (["everyone", "fixers"], None, {"read"}),
    ],
)
def test_roles_and_groups_map_to_organisations_and_scopes(values, organizations, scopes):
    settings = _settings("readers=contoso:read,fixers=contoso:read|remediate,fab-fixers=fabrikam:read|remediate,"
                         "ops=*:admin,everyone=*:read", IMAGETRAIL_SSO_GROUPS_CLAIM="realm_access.roles")
    principal = principal_for({"sub": "u1", "name": "U", "realm_access": {"roles": values}}, settings)
    assert principal.kind == "sso" and principal.subject == "oidc:u1"
    assert principal.organizations == (None if organizations is None else frozenset(organizations))
    assert principal.scopes == frozenset(scopes)


def test_claims_that_map_to_nothing_readable_are_no_access():
    settings = _settings("fixers=contoso:remediate,readers=contoso:read")
    with pytest.raises(NoAccess) as denied:
        principal_for({"sub": "u", "name": "Una", "groups": ["fixers", "x" * 1000]}, settings)
    assert denied.value.name == "Una" and denied.value.values[0] == "fixers" and len(denied.value.values[1]) == 256
    with pytest.raises(NoAccess):
        principal_for({"sub": "u", "groups": "readers-not"}, settings)
    entra = _settings("ImageTrail.Read=contoso:read", provider="entra")
    assert principal_for({"sub": "u", "roles": ["ImageTrail.Read"]}, entra).organizations == {"contoso"}
    with pytest.raises(NoAccess) as overage:
        principal_for({"sub": "u", "_claim_names": {"groups": "src1"}}, entra)
    assert overage.value.groups_overage


def test_the_client_authenticates_the_way_the_provider_offers():
    with LocalOidcProvider(users={"u": {"groups": ["g"]}}, auth_methods=("client_secret_post",)) as provider:
        client = provider.register("http://127.0.0.1:1/auth/callback")
        settings = Settings(sso_provider="oidc", sso_issuer=provider.issuer, sso_client_id=client.client_id,
                            sso_client_secret=client.secret)
        oidc = OidcProvider(settings)
        flow = oidc.begin("http://127.0.0.1:1/auth/callback")
        callback = {k: v[0] for k, v in parse_qs(urlsplit(approve(provider, flow["auth_uri"], "u")).query).items()}
        claims = oidc.finish(flow, callback)
        assert claims["groups"] == ["g"] and claims["nonce"] == flow["nonce"]
        assert provider.token_requests[-1]["basic_auth"] is False and provider.errors == []
        # The same code twice: the provider refuses, and so does the client, with a clear message.
        with pytest.raises(SsoFailed, match="refused to exchange the code"):
            oidc.finish(flow, callback)
        assert provider.errors == ["token: code unknown, used, expired or not this client's"]


def test_the_client_refuses_a_discovery_document_for_another_issuer():
    with LocalOidcProvider() as provider:
        settings = Settings(sso_provider="oidc", sso_issuer=provider.issuer + "/other", sso_client_id="c",
                            sso_client_secret="s")
        with pytest.raises(SsoFailed) as failure:
            OidcProvider(settings).begin("http://127.0.0.1:1/cb")
        assert failure.value.status_code == 502


def test_a_provider_that_is_down_is_not_asked_again_by_every_sign_in():
    with LocalIssuer() as issuer:
        issuer.down = True
        settings = Settings(sso_provider="oidc", sso_issuer=issuer.base + "/idp", sso_client_id="c",
                            sso_client_secret="s")
        oidc = OidcProvider(settings)
        for _ in range(3):
            with pytest.raises(SsoFailed, match="HTTP 500") as failure:
                oidc.begin("http://127.0.0.1:1/cb")
            assert failure.value.status_code == 502
        assert issuer.requests == ["/idp/.well-known/openid-configuration"]


@pytest.mark.parametrize(
    "url, accepted",
    [
        ("https://id.example/authorize", True),
        ("http://127.0.0.1:8080/authorize", True),  # development on the loopback interface
        ("http://localhost/authorize", True),
        ("http://id.example/authorize", False),
        ("ftp://id.example/authorize", False),
        (None, False),
    ],
)
def test_provider_endpoints_must_be_https_off_the_loopback_interface(url, accepted):
    if accepted:
        assert _check_endpoint(url, "authorization_endpoint") == url
    else:
        with pytest.raises(SsoFailed, match="authorization_endpoint"):
            _check_endpoint(url, "authorization_endpoint")


@pytest.mark.parametrize(
    "url, safe",
    [
        ("https://dev.azure.com/o/p/_build/results?buildId=1", True),
        ("http://ci.example:8080/job/1", True),
        ("javascript:alert(1)", False),
        ("  JaVaScRiPt:alert(1)", False),
        ("java\tscript:alert(1)", False),
        ("data:text/html,<script>alert(1)</script>", False),
        ("vbscript:msgbox", False),
        ("//evil.example/x", False),
        ("https:///nohost", False),
        ("https://ex ample.com/", False),
        ("https://[::1/", False),
        ("https://example.com/" + "a" * 3000, False),
        (None, False),
    ],
)
def test_safe_url_accepts_only_http_and_https(url, safe):
    assert (safe_url(url) is not None) is safe
    assert (safe_href(url) is not None) is safe


def test_safe_href_allows_this_sites_paths_but_not_other_hosts():
    assert safe_href("/images/sha256:ab") == "/images/sha256:ab"
    assert safe_href("mailto:jane@contoso.example") == "mailto:jane@contoso.example"
    assert safe_href("//evil.example") is None and safe_href("/\\evil.example") is None


def test_every_report_url_in_the_templates_goes_through_safe_url():
    for template in TEMPLATES.glob("*.html"):
        for expression in re.findall(r'href="\{\{([^}]*)\}\}"', template.read_text()):
            if "url" in expression and expression.strip() != "next_url":  # next_url: a path, by safe_next
                assert "|safe_url" in expression, f"{template.name}: href={expression.strip()}"


def test_work_item_text_links_only_http_run_urls():
    hostile = Trail(organization="o", project="p", pipeline="ci", run_id="1", run_url="javascript:alert(1)",
                    pushed_reference="r/app:1", pushed_digest="sha256:" + "ab" * 32)
    assert "href" not in _run_link(hostile) and "ci run 1" in _run_link(hostile)
    fine = hostile.model_copy(update={"run_url": "https://dev.azure.com/o/p/_build/results?buildId=1"})
    assert _run_link(fine).startswith('<a href="https://dev.azure.com/')


def test_cli_csv_guards_formulas_behind_leading_whitespace():
    text = csv_text([{"workload": " =HYPERLINK(\"http://evil\")", "owner": "\t@SUM(1)", "image": "nginx:1.25"}],
                    ["workload", "owner", "image"])
    row = next(csv.DictReader(io.StringIO(text)))
    assert row == {"workload": "' =HYPERLINK(\"http://evil\")", "owner": "'\t@SUM(1)", "image": "nginx:1.25"}
