"""The registry notification parsers, on the vendors' own documented samples and on hostile input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from imagetrail.parsers.registry_events import MAX_EVENTS, EventInvalid, parse

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "registry"
DIGEST = "sha256:" + "ab" * 32


def sample(name: str):
    return json.loads((FIXTURES / name).read_text())


def test_distribution_pull_sample_is_not_a_push():
    parsed = parse(sample("distribution-pull.json"))
    assert (parsed.format, parsed.pushes, parsed.ignored) == ("distribution", [], 1)


def test_distribution_push_keeps_every_field_and_skips_blob_uploads():
    body = sample("distribution-pull.json")
    push = copy.deepcopy(body["events"][0])
    push["action"] = "push"
    push["actor"] = {"name": "ci-bot"}
    blob = copy.deepcopy(push)
    blob["id"] = "blob-1"
    blob["target"] = {"mediaType": "application/octet-stream", "digest": DIGEST, "repository": "hello-world",
                      "url": "http://192.168.100.227:5000/v2/hello-world/blobs/" + DIGEST}
    parsed = parse({"events": [push, blob]})
    assert parsed.ignored == 1
    [event] = parsed.pushes
    assert (event.event_id, event.registry, event.repository, event.tag, event.digest) == (
        "320678d8-ca14-430f-8bb6-4ca139cd83f7", "192.168.100.227:5000", "hello-world", "latest",
        "sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf")
    assert (event.actor, event.source_addr, event.user_agent) == ("ci-bot", "192.168.64.11:42961", "curl/7.38.0")
    assert event.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert event.occurred_at.isoformat() == "2016-03-09T22:44:26.402973+00:00"


def test_acr_sample_with_the_docs_masked_digest_is_refused_naming_the_field():
    with pytest.raises(EventInvalid) as error:
        parse(sample("acr-webhook-push.json"))
    assert error.value.path == "target.digest"


def test_acr_push_with_a_real_digest():
    body = sample("acr-webhook-push.json")
    body["target"]["digest"] = DIGEST
    parsed = parse(body)
    assert parsed.format == "acr"
    [event] = parsed.pushes
    assert (event.registry, event.repository, event.tag, event.digest) == (
        "myregistry.azurecr.io", "hello-world", "v1", DIGEST)
    assert event.user_agent.startswith("docker/17.09.0-ce")


def test_event_grid_image_pushed():
    parsed = parse(sample("event-grid-image-pushed.json"))
    [event] = parsed.pushes
    assert (parsed.format, event.event_id, event.registry, event.repository, event.tag) == (
        "event-grid", "31c51664-e5bd-416a-a5df-e5206bc47ed0", "demoregistry.azurecr.io", "aci-helloworld", "v1")


def test_event_grid_subscription_validation_returns_the_code():
    parsed = parse(sample("event-grid-validation.json"))
    assert parsed.pushes == [] and parsed.validation_code == "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"


def test_harbor_default_and_cloudevents():
    default = parse(sample("harbor-push-default.json"))
    [event] = default.pushes
    assert (event.registry, event.repository, event.tag, event.actor) == (
        "hub.harbor.com", "test-webhook/debian", "latest", "admin")
    assert event.occurred_at.isoformat() == "2020-04-15T03:45:08+00:00"
    # No event id in the default format: the same body gives the same id (idempotent), another push another.
    assert parse(sample("harbor-push-default.json")).pushes[0].event_id == event.event_id
    other = sample("harbor-push-default.json")
    other["occur_at"] += 1
    assert parse(other).pushes[0].event_id != event.event_id
    cloud = parse(sample("harbor-push-cloudevents.json"))
    [event] = cloud.pushes
    assert (event.registry, event.repository, event.tag, event.actor) == (
        "harbor.dev", "library/busybox", "v1.0", "robot$library+ci")


def test_harbor_pull_is_ignored():
    body = sample("harbor-push-default.json")
    body["type"] = "PULL_ARTIFACT"
    parsed = parse(body)
    assert parsed.pushes == [] and parsed.ignored == 1


@pytest.mark.parametrize("mutate, path", [
    (lambda e: e["target"].update(digest="md5:abc"), "events[0].target.digest"),
    (lambda e: e["target"].update(repository="Upper/Case"), "events[0].target.repository"),
    (lambda e: e["target"].update(tag="bad tag"), "events[0].target.tag"),
    (lambda e: e["target"].update(tag="t" * 200), "events[0].target.tag"),
    (lambda e: e["request"].update(host="evil/host"), "events[0].request.host"),
    (lambda e: e["request"].update(useragent="x" * 5000), "events[0].request.useragent"),
    (lambda e: e.update(actor={"name": "evil\x1b]0;pwned\x07"}), "events[0].actor.name"),
    (lambda e: e.update(timestamp="yesterday"), "events[0].timestamp"),
    (lambda e: e.update(id=None), "events[0].id"),
    (lambda e: e.update(target=[]), "events[0].target"),
])
def test_bad_fields_are_named(mutate, path):
    event = sample("distribution-pull.json")["events"][0]
    event["action"] = "push"
    mutate(event)
    with pytest.raises(EventInvalid) as error:
        parse({"events": [event]})
    assert error.value.path == path


def test_bounds_on_count_and_depth():
    with pytest.raises(EventInvalid, match="limit is 1000"):
        parse({"events": [{}] * (MAX_EVENTS + 1)})
    deep: dict = {}
    cursor = deep
    for _ in range(40):
        cursor["a"] = {}
        cursor = cursor["a"]
    with pytest.raises(EventInvalid, match="nested deeper"):
        parse({"events": [deep]})
    with pytest.raises(EventInvalid, match="not a registry notification"):
        parse({"hello": "world"})


def test_event_grid_cloudevents_schema():
    grid = sample("event-grid-image-pushed.json")[0]
    cloud = {"specversion": "1.0", "type": grid["eventType"], "source": grid["topic"], "id": grid["id"],
             "time": grid["eventTime"], "subject": grid["subject"], "data": grid["data"]}
    for body in (cloud, [cloud]):
        [event] = parse(body).pushes
        assert (event.registry, event.repository, event.tag, event.event_id) == (
            "demoregistry.azurecr.io", "aci-helloworld", "v1", "31c51664-e5bd-416a-a5df-e5206bc47ed0")
