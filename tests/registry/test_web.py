"""The gaps where people look: the coverage page, the explorer filter "untraced pushed images" and the API."""

from __future__ import annotations

from tests.cloud import scenario
from tests.registry.test_api import envelope, post, push_event
from tests.server.conftest import new_key


def test_untraced_pushes_on_the_coverage_page_and_in_the_explorer(client, admin):
    inventory = scenario.inventory().model_dump(mode="json")
    assert client.post("/v1/clusters/prod/inventory", json=inventory, headers=admin).status_code in (200, 201)
    key = new_key(client, "*", "registry")
    assert post(client, key, envelope(push_event("w1", "shop/web", "9.9", scenario.WEB, actor="night-build"))
                ).json()["stored"] == 1

    rows = client.get("/v1/query", params={"untraced_push": "true"}, headers=admin).json()["rows"]
    everything = client.get("/v1/query", headers=admin).json()["rows"]
    assert rows and {r["digest"] for r in rows} == {scenario.WEB}
    assert len(everything) > len(rows)

    page = client.get("/coverage", headers=admin)
    assert page.status_code == 200
    assert "Untraced pushes" in page.text and "night-build" in page.text
    assert "registry.contoso.example is not in IMAGETRAIL_REGISTRIES" in page.text  # why nothing was read

    explorer = client.get("/explorer", params={"untraced_push": "true", "sort": "image"}, headers=admin)
    unfiltered = client.get("/explorer", params={"sort": "image"}, headers=admin)
    assert explorer.status_code == 200
    assert 'name="untraced_push" value="true" checked' in explorer.text
    assert explorer.text.count('class="workload-cell"') == len(rows) < unfiltered.text.count('class="workload-cell"')

    # A reader of one organisation with no registry mapped sees no registry push on the coverage page.
    reader = client.get("/coverage", headers=new_key(client, "contoso", "read"))
    assert reader.status_code == 200 and "night-build" not in reader.text


def test_image_page_shows_the_registry_side(client, admin):
    from tests.server.reports import ado_report, body, digest, push

    both, registry_only = digest("web-both"), digest("web-registry-only")
    reference = "registry.contoso.example/web/app:7.0"
    assert client.post("/v1/reports", json=body(ado_report(pushes=[push(reference, both)])), headers=admin
                       ).status_code == 201
    key = new_key(client, "*", "registry")
    post(client, key, envelope(push_event("p1", "web/app", "7.0", both, actor="alice"),
                               push_event("p2", "other/app", "1", registry_only, actor="mallory")))
    page = client.get(f"/images/{both}", headers=admin)
    assert page.status_code == 200 and "Registry side" in page.text
    assert "collector and registry" in page.text and "alice" in page.text
    lone = client.get(f"/images/{registry_only}", headers=admin)
    assert lone.status_code == 200 and "registry only" in lone.text and "mallory" in lone.text
    # A reader of one organisation sees the push of its own run, not a registry it is not mapped to.
    contoso = client.get(f"/images/{registry_only}", headers=new_key(client, "contoso", "read"))
    assert "mallory" not in contoso.text
