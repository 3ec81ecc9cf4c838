"""POST /v1/registry-events and the registry side of the trail, on SQLite and the real PostgreSQL."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import sqlalchemy as sa

from tests.server.conftest import new_key
from tests.server.reports import ado_report, body, digest, push

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "registry"
REGISTRY = "registry.contoso.example"
DISTRIBUTION = {"Content-Type": "application/vnd.docker.distribution.events.v1+json"}


def envelope(*events: dict) -> dict:
    return {"events": list(events)}


def push_event(event_id: str, repository: str, tag: str, image_digest: str, *, registry: str = REGISTRY,
               actor: str = "ci-robot", action: str = "push") -> dict:
    event = copy.deepcopy(json.loads((FIXTURES / "distribution-pull.json").read_text())["events"][0])
    event.update(id=event_id, action=action, actor={"name": actor})
    event["target"].update(repository=repository, tag=tag, digest=image_digest,
                           url=f"https://{registry}/v2/{repository}/manifests/{image_digest}")
    event["request"].update(host=registry, method="PUT", useragent="buildah/1.28.2", addr="10.1.2.3:5555")
    return event


def count(client, table: str) -> int:
    with client.app.state.engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()


def post(client, headers, payload, extra=None):
    return client.post("/v1/registry-events", content=json.dumps(payload), headers={**headers, **(extra or {})})


def test_push_is_stored_once_and_queued_for_attribution(client):
    key = new_key(client, "*", "registry")
    event = push_event("e1", "web/app", "1.0", digest("one"))
    first = post(client, key, envelope(event), DISTRIBUTION)
    assert first.status_code == 200, first.text
    assert first.json() == {"format": "distribution", "received": 1, "stored": 1, "duplicates": 0, "ignored": 0}
    again = post(client, key, envelope(event, push_event("e2", "web/app", "1.0", digest("one"), action="pull")))
    assert again.json() == {"format": "distribution", "received": 1, "stored": 0, "duplicates": 1, "ignored": 1}
    assert count(client, "registry_events") == 1
    assert count(client, "registry_artifacts") == 1
    with client.app.state.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT registry, repository, tag, digest, actor, source_addr, user_agent, "
                                   "sent_by FROM registry_events")).one()
    assert tuple(row[:7]) == (REGISTRY, "web/app", "1.0", digest("one"), "ci-robot", "10.1.2.3:5555",
                              "buildah/1.28.2")
    assert row.sent_by.startswith("api-key:")


def test_credentials_and_scope(client):
    event = envelope(push_event("e1", "web/app", "1.0", digest("one")))
    assert post(client, {}, event).status_code == 401
    for scope in ("ingest", "read"):
        answer = post(client, new_key(client, "*", scope), event)
        assert answer.status_code == 403 and "registry scope" in answer.json()["detail"]
    # A key of one organisation speaks only for registries mapped to it.
    answer = post(client, new_key(client, "contoso", "registry"), event)
    assert answer.status_code == 403 and REGISTRY in answer.json()["detail"]
    assert count(client, "registry_events") == 0


def test_registry_key_of_an_organisation_posts_for_its_mapped_registry(make_client):
    client = make_client(registry_organizations={REGISTRY: ["contoso"]})
    answer = post(client, new_key(client, "contoso", "registry"), envelope(push_event("e1", "web/app", "1", digest("a"))))
    assert answer.status_code == 200 and answer.json()["stored"] == 1


def test_bad_input_is_a_4xx_naming_the_field_and_stores_nothing(make_client):
    client = make_client(max_registry_event_bytes=4096)
    key = new_key(client, "*", "registry")
    good = push_event("e1", "web/app", "1.0", digest("one"))
    bad = push_event("e2", "web/app", "1.0", "sha256:nothex")
    answer = post(client, key, envelope(good, bad))
    assert answer.status_code == 422 and answer.json()["detail"].startswith("events[1].target.digest")
    assert client.post("/v1/registry-events", content=b"{not json", headers=key).status_code == 400
    assert post(client, key, envelope(*[good] * 20)).status_code == 413
    deep = "[" * 100_000 + "]" * 100_000
    assert client.post("/v1/registry-events", content=deep, headers=key).status_code in (413, 422)
    assert count(client, "registry_events") == 0


def test_event_grid_handshake_is_answered(client):
    key = new_key(client, "*", "registry")
    answer = post(client, key, json.loads((FIXTURES / "event-grid-validation.json").read_text()))
    assert answer.status_code == 200
    assert answer.json()["validationResponse"] == "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"


def test_collector_and_registry_report_one_push_with_two_sources(client, admin):
    image = digest("two-sources")
    reference = f"{REGISTRY}/web/app:2.0"
    assert client.post("/v1/reports", json=body(ado_report(pushes=[push(reference, image)])), headers=admin).status_code == 201
    key = new_key(client, "*", "registry")
    assert post(client, key, envelope(push_event("e-two", "web/app", "2.0", image))).json()["stored"] == 1
    for trail in (client.get(f"/v1/images/{image}/trail", headers=admin).json(),
                  client.get("/v1/trail", params={"reference": reference}, headers=admin).json()):
        [one] = trail["pushes"]
        assert one["sources"] == ["collector", "registry"]
        assert one["run"]["id"] == "345"
        assert [e["actor"] for e in one["registry_events"]] == ["ci-robot"]
        assert trail["registry_pushes"] == []
    gaps = client.get("/v1/coverage/untraced-pushes", headers=admin).json()
    assert gaps["total"] == 0


def test_promoted_reference_gets_the_trail_of_its_digest(client, admin):
    image = digest("promoted")
    source = f"{REGISTRY}/web/app:3.0"
    assert client.post("/v1/reports", json=body(ado_report(pushes=[push(source, image)])), headers=admin).status_code == 201
    key = new_key(client, "*", "registry")
    post(client, key, envelope(push_event("copy-1", "prod/app", "3.0", image, registry="prod.contoso.example")))
    trail = client.get("/v1/trail", params={"reference": "prod.contoso.example/prod/app:3.0"}, headers=admin).json()
    assert trail["digest"] == image
    assert [p["reference"] for p in trail["pushes"]] == [source]
    assert [(p["registry"], p["repository"]) for p in trail["registry_pushes"]] == [("prod.contoso.example", "prod/app")]


def test_untraced_pushes_with_counts_and_visibility(make_client):
    client = make_client(registry_organizations={"other.example": ["fabrikam"]})
    admin = new_key(client, "*", "admin")
    key = new_key(client, "*", "registry")
    post(client, key, envelope(push_event("u1", "team/a", "1", digest("u1"), actor="alice"),
                               push_event("u2", "team/b", "1", digest("u2"), actor="alice"),
                               push_event("u3", "team/c", "1", digest("u3"), actor="bob",
                                          registry="other.example")))
    page = client.get("/v1/coverage/untraced-pushes", headers=admin).json()
    assert page["total"] == 3
    assert {(c["name"], c["pushes"]) for c in page["by_actor"]} == {("alice", 2), ("bob", 1)}
    assert {(c["name"], c["pushes"]) for c in page["by_registry"]} == {(REGISTRY, 2), ("other.example", 1)}
    first = page["pushes"][0]
    assert set(first) >= {"registry", "repository", "tag", "digest", "actor", "source_addr", "pushed_at"}
    only_bob = client.get("/v1/coverage/untraced-pushes", params={"actor": "bob"}, headers=admin).json()
    assert [p["repository"] for p in only_bob["pushes"]] == ["team/c"]
    # Readers of one organisation see only the registries mapped to it.
    fabrikam = client.get("/v1/coverage/untraced-pushes", headers=new_key(client, "fabrikam", "read")).json()
    assert [p["registry"] for p in fabrikam["pushes"]] == ["other.example"]
    contoso = client.get("/v1/coverage/untraced-pushes", headers=new_key(client, "contoso", "read")).json()
    assert contoso["total"] == 0
    trail = client.get(f"/v1/images/{digest('u1')}/trail", headers=new_key(client, "contoso", "read")).json()
    assert trail["registry_pushes"] == []


def test_concurrent_requests_store_each_event_once(client):
    from concurrent.futures import ThreadPoolExecutor

    key = new_key(client, "*", "registry")
    # 24 requests of 5 events; neighbouring requests share events (a registry resending a batch).
    bodies = [envelope(*(push_event(f"c{n + i}", "team/app", f"t{n + i}", digest(f"c{n + i}")) for i in range(5)))
              for n in range(0, 48, 2)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda b: post(client, key, b), bodies))
    assert all(a.status_code == 200 for a in answers)
    unique = {e["id"] for b in bodies for e in b["events"]}
    assert sum(a.json()["stored"] for a in answers) == len(unique) == count(client, "registry_events")
    assert all(a.json()["stored"] + a.json()["duplicates"] == 5 for a in answers)
