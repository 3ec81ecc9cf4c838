"""Helpers of the sign-in tests: form tokens, the single sign-on round trip without a browser, links on a page."""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Dict, Iterator, List, Optional, Union
from urllib.parse import parse_qs, urlsplit

import requests

from imagetrail.sanitize import safe_href
from tests.support.live_server import running_server
from tests.support.oidc_provider import Client, LocalOidcProvider
from tests.web import dataset
from tests.web.conftest import create_key


def csrf_token(page: str) -> str:
    return re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page).group(1)


def start_sso(http: requests.Session, base_url: str, next_url: str = "/") -> str:
    """Open the sign-in page and press the single sign-on button; returns the provider's authorize URL."""
    page = http.get(base_url + "/login", params={"next": next_url}, timeout=30)
    answer = http.post(base_url + "/login/sso", data={"csrf_token": csrf_token(page.text), "next": next_url},
                       allow_redirects=False, timeout=30)
    assert answer.status_code == 303, answer.text[-500:]
    return answer.headers["location"]


def approve(provider: LocalOidcProvider, authorize_url: str, user: str, verify: Union[bool, str] = True) -> str:
    """Sign in at the provider as ``user`` (what its form posts); returns the callback URL it redirects to."""
    query = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
    answer = requests.post(provider.base + provider.paths()["approve"], data={**query, "username": user},
                           allow_redirects=False, verify=verify, timeout=30)
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


def well_behaved(provider: LocalOidcProvider) -> Iterator[LocalOidcProvider]:
    """For a fixture: the provider with no recorded refusal, restored to good behaviour afterwards."""
    provider.errors.clear()
    yield provider
    provider.id_token_overrides = {}
    provider.signing_key = None


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: List[str] = []

    def handle_starttag(self, tag: str, attrs: List[tuple]) -> None:
        self.hrefs += [v for k, v in attrs if k == "href" and v and not v.startswith("#")]


def links(page: str) -> List[str]:
    """Every href on the page except in-page anchors."""
    parser = _Links()
    parser.feed(page)
    return parser.hrefs


def unsafe_links(page: str) -> List[Optional[str]]:
    return [h for h in links(page) if safe_href(h) != h or "script" in h.lower()]


@dataclass
class SsoServer:
    url: str
    admin_key: str
    provider: LocalOidcProvider
    client: Client


@contextmanager
def serving_with_sso(tmp_path_factory, provider: LocalOidcProvider, env: Dict[str, str]) -> Iterator[SsoServer]:
    """`imagetrail serve` with the web dataset, signing in through ``provider`` (a client registered for it)."""
    database_url = f"sqlite:///{tmp_path_factory.mktemp('sso-db') / 'imagetrail.db'}"
    client = provider.register("")  # its redirect URI is known once the server has a port
    env = {**env, "IMAGETRAIL_SSO_CLIENT_ID": client.client_id, "IMAGETRAIL_SSO_CLIENT_SECRET": client.secret}
    with running_server(database_url, env) as url:
        client.redirect_uris[:] = [url + "/auth/callback"]
        admin = create_key(database_url, "*", "admin")
        dataset.load(url, admin)
        yield SsoServer(url, admin, provider, client)


def sso_in_browser(browser, provider: LocalOidcProvider, user: str) -> None:
    """On the sign-in page: press the single sign-on button and sign in at the provider as ``user``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.find_element(By.ID, "sso-sign-in").click()
    WebDriverWait(browser, 15).until(lambda d: d.current_url.startswith(provider.base))
    browser.find_element(By.ID, "username").send_keys(user)
    browser.find_element(By.ID, "approve").click()
