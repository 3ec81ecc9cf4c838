"""End to end: remediation work items from the explorer, created in a local Azure DevOps stand-in.

The real `imagetrail serve` runs with ``IMAGETRAIL_AZURE_DEVOPS_PAT`` set. The reports of each
organisation name its own stand-in as their collection URL (``System.CollectionUri``, the report's
``serverUrl``), like Azure DevOps Server collections, and the server trusts exactly those
(``IMAGETRAIL_AZURE_DEVOPS_SERVER_URLS``): the PAT only goes to configured URLs. Each stand-in is the
cloud engineer's ``AzureDevOpsServer``, which checks every request against the documented REST API
(Basic auth with the PAT, JSON Patch body, ``api-version`` 7.x).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.azure_devops import AzureDevOpsServer
from tests.support.live_server import running_server
from tests.web import dataset
from tests.web.conftest import create_key, screenshot, sign_in

pytestmark = pytest.mark.e2e

PAT = "web-e2e-pat-4b1d9c7e2f"
# A second cluster runs the clamav image too: two explorer rows, one image, so one work item.
SECOND_CLUSTER = "aks-prod-neu"
CLAMAV_TRIVY = "trivysummary_acp-clamav-http-0.4.0_image-report.json"
BUILD_BY_DIGEST = {build.digest: build for build in dataset.BUILDS}


@dataclass
class RemediationEstate:
    url: str
    admin_key: str
    devops: Dict[str, AzureDevOpsServer]  # organisation -> its stand-in

    def created(self) -> List[dict]:
        return [item for server in self.devops.values() for item in server.created]


def _second_cluster(url: str, admin_key: str) -> None:
    from imagetrail.parsers.k8s_inventory import normalize

    pod = dataset._pod(
        "scanning",
        "clamav-6d5f7c8b9-zx9k2",
        {"app": "clamav", "pod-template-hash": "6d5f7c8b9"},
        "clamav-6d5f7c8b9",
        "clamav",
        "quay.io/ukhomeofficedigital/acp-clamav-http:0.4.0",
        f"quay.io/ukhomeofficedigital/acp-clamav-http@{dataset.CLAMAV}",
    )
    inventory = normalize([pod], SECOND_CLUSTER, "file").to_dict()
    response = requests.post(
        f"{url}/v1/clusters/{SECOND_CLUSTER}/inventory",
        json=inventory,
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=30,
    )
    assert response.status_code in (200, 201, 202), response.text


@pytest.fixture(scope="module")
def estate() -> Iterator[RemediationEstate]:
    with tempfile.TemporaryDirectory(prefix="web-remediation-") as tmp:
        database_url = f"sqlite:///{Path(tmp) / 'imagetrail.db'}"
        with AzureDevOpsServer("contoso", PAT) as contoso, AzureDevOpsServer("fabrikam", PAT) as fabrikam:
            devops = {"contoso": contoso, "fabrikam": fabrikam}
            environment = {
                "IMAGETRAIL_AZURE_DEVOPS_PAT": PAT,
                "IMAGETRAIL_AZURE_DEVOPS_SERVER_URLS": ",".join(s.url for s in devops.values()),
            }
            with running_server(database_url, environment) as url:
                admin_key = create_key(database_url, "*", "admin")
                dataset.load(url, admin_key, server_urls={org: s.url + "/" for org, s in devops.items()})
                _second_cluster(url, admin_key)
                yield RemediationEstate(url, admin_key, devops)


def _select_every_traced_row(driver) -> List[str]:
    boxes = driver.find_elements(By.CSS_SELECTOR, "#results input[name='row']")
    for box in boxes:
        box.click()
    return [box.get_attribute("value") for box in boxes]


def _open_confirmation(driver) -> None:
    driver.find_element(By.ID, "open-work-items").click()
    WebDriverWait(driver, 10).until(lambda d: "/remediations/new" in d.current_url)


def test_work_items_are_created_once_per_image_from_the_explorer(estate, browser):
    sign_in(browser, estate, estate.admin_key, "/explorer")
    selected = _select_every_traced_row(browser)
    # Rows with a trail: clamav in two clusters, nginx, the sidecar: three images in two organisations.
    assert sorted(selected) == sorted([dataset.CLAMAV, dataset.CLAMAV, dataset.NGINX, dataset.SIDECAR])
    _open_confirmation(browser)

    # The confirmation is a dry run: it lists one work item per image with high+ findings (nginx has
    # none, and says so), and nothing is created yet.
    planned = {}
    for row in browser.find_elements(By.CSS_SELECTOR, "#planned-items tbody tr"):
        digest_link = row.find_element(By.CSS_SELECTOR, "td a").get_attribute("href")
        digest = digest_link.rsplit("/", 1)[-1]
        planned[digest] = {
            "text": row.text,
            "title": row.find_element(By.CLASS_NAME, "work-item-title").text,
            "cves": [li.text for li in row.find_elements(By.CSS_SELECTOR, ".cve-list li")],
            "build": row.find_element(By.CSS_SELECTOR, "a.build-link").get_attribute("href"),
        }
    assert set(planned) == {dataset.CLAMAV, dataset.SIDECAR}, browser.page_source[:2000]
    not_created = browser.find_element(By.ID, "skipped-items").text
    assert dataset.NGINX[:19] in not_created and "no finding at high or above" in not_created
    for digest, item in planned.items():
        build = BUILD_BY_DIGEST[digest]
        assert f"{build.org} / {build.project}" in item["text"] and build.email in item["text"]
        assert item["build"].endswith(f"/{build.project}/_build/results?buildId={build.run_id}")
        assert item["cves"] and item["title"].startswith(f"[ImageTrail] {len(item['cves'])} ")
    high_cves = dataset.trivy_cves(CLAMAV_TRIVY, {"HIGH", "CRITICAL"})
    assert set(planned[dataset.CLAMAV]["cves"]) == high_cves
    assert browser.find_element(By.ID, "confirm-create").text == "Create 2 work items"
    assert estate.created() == [] and all(not s.requests for s in estate.devops.values())
    screenshot(browser, "08-remediation-confirm", full_page=True)

    browser.find_element(By.ID, "confirm-create").click()
    WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.ID, "created-items"))

    # What the stand-ins received: every request met the documented API, one item per image.
    for org, server in estate.devops.items():
        assert server.errors == [], (org, server.errors)
    created = estate.created()
    assert len(created) == 2 and len(estate.devops["contoso"].created) == 1
    by_title = {item["fields"]["System.Title"]: item for item in created}
    for digest, plan in planned.items():
        build = BUILD_BY_DIGEST[digest]
        item = by_title[plan["title"]]
        assert item in estate.devops[build.org].created
        assert (item["project"], item["type"]) == (build.project, "Bug")
        fields = item["fields"]
        assert fields["System.AssignedTo"] == build.email  # the requester of the run that built it
        assert digest in fields["System.Description"] and build.commit in fields["System.Description"]
        assert all(f"<td>{cve}</td>" in fields["System.Description"] for cve in plan["cves"])
        assert item["relations"] == [
            {
                "rel": "ArtifactLink",
                "url": f"vstfs:///Build/Build/{build.run_id}",
                "attributes": {"name": "Build"},
            }
        ]
    clamav = by_title[planned[dataset.CLAMAV]["title"]]["fields"]["System.Description"]
    for cve, fixed_versions in dataset.trivy_fixed_versions(CLAMAV_TRIVY, {"HIGH", "CRITICAL"}).items():
        assert cve in clamav and all(version in clamav for version in fixed_versions), cve
    # One work item for the image, naming both places it runs.
    assert f"{dataset.CLUSTER} / ml-serving" in clamav and f"{SECOND_CLUSTER} / scanning" in clamav

    # The result page lists them, each linking to its work item in Azure DevOps.
    statuses, links = {}, {}
    for row in browser.find_elements(By.CSS_SELECTOR, "#created-items tbody tr"):
        digest = row.find_element(By.CSS_SELECTOR, "td a").get_attribute("href").rsplit("/", 1)[-1]
        statuses[digest] = row.find_element(By.CLASS_NAME, "status").text
        for link in row.find_elements(By.CSS_SELECTOR, "a.work-item-link"):
            links[digest] = link
    assert statuses == {dataset.CLAMAV: "created", dataset.SIDECAR: "created"}  # what the confirmation listed
    assert set(links) == set(planned)
    hrefs = set()
    for digest, link in links.items():
        build = BUILD_BY_DIGEST[digest]
        item_id = int(link.text.lstrip("#"))
        assert (
            estate.devops[build.org].created[item_id - 1]["fields"]["System.Title"]
            == planned[digest]["title"]
        )
        hrefs.add(link.get_attribute("href"))
        assert link.get_attribute("href") == (
            f"{estate.devops[build.org].url}/{build.project}/_workitems/edit/{item_id}"
        )
    screenshot(browser, "09-remediation-created", full_page=True)

    # Again: the confirmation now offers nothing to create and links the existing work items.
    browser.get(estate.url + "/explorer")
    _select_every_traced_row(browser)
    _open_confirmation(browser)
    assert not browser.find_elements(By.ID, "planned-items")
    assert not browser.find_elements(By.ID, "confirm-create")
    skipped = browser.find_element(By.ID, "skipped-items")
    existing = {a.get_attribute("href") for a in skipped.find_elements(By.CSS_SELECTOR, "a.work-item-link")}
    assert existing == hrefs
    assert skipped.text.count("a work item for this image and CVE set exists") == 2
    screenshot(browser, "10-remediation-again", full_page=True)

    # A replayed create (double submit, a second tab) creates nothing either.
    token = browser.find_element(By.NAME, "csrf_token").get_attribute("value")
    replay = requests.post(
        estate.url + "/remediations",
        data={"row": [*planned, dataset.NGINX], "csrf_token": token},
        cookies={"imagetrail_session": browser.get_cookie("imagetrail_session")["value"]},
        timeout=60,
    )
    assert replay.status_code == 200, replay.text[:500]
    assert replay.text.count("exists: a work item for this image and CVE set exists") == 2
    assert "skipped: no finding at high or above" in replay.text  # nginx, which the POST named too
    assert len(estate.created()) == 2
    assert all(server.errors == [] for server in estate.devops.values())
