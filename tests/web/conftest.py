"""Fixtures for the web explorer tests: the real server with realistic data, and headless Chromium.

Chromium is Debian's ``chromium`` driven by Selenium through ``chromedriver`` (both found on
PATH, never downloaded). Missing browser: skipped locally, a failure in CI (tests/support).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator

import pytest

from tests.support import services
from tests.support.live_server import running_server
from tests.web import dataset

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "web"
WINDOW = (1366, 768)
# Without the background-networking flags Chromium keeps calling Google services, which this
# closed network refuses (see the task notes); --disable-quic for the same reason.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
]


@dataclass
class WebServer:
    url: str
    database_url: str
    admin_key: str  # scope admin, every organisation
    contoso_reader: str  # scope read, organisation contoso only
    ingest_only: str  # scope ingest: may not read

    def headers(self, key: str) -> Dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


def create_key(database_url: str, org: str, scope: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "imagetrail", "keys", "create", "--org", org, "--scope", scope],
        env={**os.environ, "IMAGETRAIL_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def web_server(tmp_path_factory) -> Iterator[WebServer]:
    """One `imagetrail serve` per test module, on a fresh SQLite database loaded through the API."""
    database_url = f"sqlite:///{tmp_path_factory.mktemp('web-db') / 'imagetrail.db'}"
    with running_server(database_url) as url:  # migrates the database at start
        server = WebServer(
            url=url,
            database_url=database_url,
            admin_key=create_key(database_url, "*", "admin"),
            contoso_reader=create_key(database_url, "contoso", "read"),
            ingest_only=create_key(database_url, "contoso", "ingest"),
        )
        dataset.load(url, server.admin_key)
        yield server


def _chromium_paths() -> tuple:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        services.unavailable("Chromium and chromedriver", "'chromium' or 'chromedriver' is not on PATH")
    return browser, driver


@pytest.fixture(scope="session")
def chromium_paths() -> tuple:
    return _chromium_paths()


@pytest.fixture
def browser_factory(chromium_paths, tmp_path) -> Iterator[Callable[..., object]]:
    """Start headless Chromium sessions (each with a fresh profile); all are closed after the test."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    drivers = []

    def start(javascript: bool = True, flags: tuple = ()):
        browser, driver_path = chromium_paths
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in (*CHROMIUM_FLAGS, *flags):
            options.add_argument(flag)
        profile = tmp_path / f"chromium-profile-{len(drivers)}"
        profile.mkdir()
        options.add_argument(f"--user-data-dir={profile}")
        if not javascript:
            options.add_experimental_option(
                "prefs", {"profile.managed_default_content_settings.javascript": 2}
            )
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
        driver.set_window_size(*WINDOW)
        driver.set_page_load_timeout(30)
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.quit()


@pytest.fixture
def browser(browser_factory):
    return browser_factory()


def screenshot(driver, name: str, full_page: bool = False) -> Path:
    """Keep a PNG of what the browser shows in tests/artifacts/web/ (git-ignored) for review.

    ``full_page`` captures the whole document through the DevTools protocol (works with
    JavaScript disabled too), at the 1366 px width of the window.
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if full_page:
        metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        width = metrics["cssLayoutViewport"]["clientWidth"]
        height = min(metrics["cssContentSize"]["height"], 4000)
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            },
        )
        path.write_bytes(base64.b64decode(shot["data"]))
    else:
        driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000, f"screenshot {path} looks empty"
    return path


def sign_in(driver, server, key: str, path: str = "/") -> None:
    """Open ``path`` anonymously, get sent to the sign-in form, and sign in with ``key``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(server.url + path)
    assert "/login" in driver.current_url, "an anonymous browser must be sent to the sign-in form"
    box = driver.find_element(By.ID, "api-key")
    box.send_keys(key)
    box.submit()
    WebDriverWait(driver, 10).until(lambda d: "/login" not in d.current_url)
