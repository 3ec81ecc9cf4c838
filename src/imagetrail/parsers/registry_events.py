"""Registry push notifications: parse what a registry POSTs into typed push events.

Pure functions (no store, no network). Accepted bodies:

* CNCF Distribution notification envelopes, ``{"events": [...]}``
  (``application/vnd.docker.distribution.events.v1+json``), sent by the Docker registry and
  registries built on it;
* Azure Container Registry webhooks (one ``{"id", "timestamp", "action", "target", "request"}``);
* Azure Event Grid ``Microsoft.ContainerRegistry.ImagePushed`` events (Event Grid schema: a JSON
  array; CloudEvents 1.0 schema: an object or array), and the subscription validation handshake;
* Harbor webhooks: ``PUSH_ARTIFACT`` in the default format and ``harbor.artifact.pushed``
  CloudEvents.

Only pushes of manifests (images, indexes, artifacts) are kept: pulls, deletes, and blob uploads
are counted as ignored. Every bound (events, depth, string lengths) names the field that broke it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional
from urllib.parse import urlsplit

from imagetrail.reference import DIGEST_RE, TAG_RE
from imagetrail.reference import PATH_RE as REPOSITORY_RE

MAX_EVENTS = 1000
MAX_DEPTH = 16
# Longest accepted value per stored field (the registry_events columns).
LIMITS = {"event_id": 255, "registry": 255, "repository": 512, "tag": 128, "media_type": 255, "actor": 255,
          "source_addr": 255, "user_agent": 1024}

CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Tags that hold signatures and attestations of another digest, not images: the OCI referrers
# fallback (sha256-<hex>) and cosign's .sig / .att / .sbom.
ATTACHMENT_TAG_RE = re.compile(r"^sha256-[0-9a-f]{64}(?:\.(?:sig|att|sbom))?$")
HOST_RE = re.compile(r"^[A-Za-z0-9.-]+(?::[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?$")

MANIFEST_TYPES = frozenset({
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
})
DISTRIBUTION_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
EVENT_GRID_PUSHED = "Microsoft.ContainerRegistry.ImagePushed"
EVENT_GRID_VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
HARBOR_PUSH = "PUSH_ARTIFACT"
HARBOR_CLOUDEVENT_PUSH = "harbor.artifact.pushed"


class EventInvalid(ValueError):
    """The body cannot be used; ``str()`` starts with the field path, e.g. ``events[2].target.digest``."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


@dataclass(frozen=True)
class PushEvent:
    """One manifest pushed to one registry repository (and tag, when pushed by tag)."""

    event_id: str
    format: str  # distribution | acr | event-grid | harbor
    registry: str
    repository: str
    tag: str  # "" when pushed by digest
    digest: str
    occurred_at: datetime
    media_type: Optional[str] = None
    actor: Optional[str] = None
    source_addr: Optional[str] = None
    user_agent: Optional[str] = None

    @property
    def reference(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}" if self.tag else \
            f"{self.registry}/{self.repository}@{self.digest}"


@dataclass
class Parsed:
    format: str
    pushes: List[PushEvent] = field(default_factory=list)
    ignored: int = 0  # pulls, deletes, blob uploads, other event types
    validation_code: Optional[str] = None  # Event Grid subscription handshake: echo it back


# -- bounds -------------------------------------------------------------------------------------

def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Refuse bodies nested deeper than ``limit`` (iteratively: no recursion on hostile input)."""
    stack = [(value, 1, "")]
    while stack:
        item, depth, path = stack.pop()
        if depth > limit:
            raise EventInvalid(path or "body", f"nested deeper than {limit} levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1, f"{path}.{k}" if path else str(k)) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, depth + 1, f"{path}[{i}]") for i, v in enumerate(item))


def _obj(value: Any, path: str, required: bool = True) -> Dict[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise EventInvalid(path, "must be an object")
    return value


def _str(value: Any, path: str, name: str, *, required: bool = False) -> Optional[str]:
    if value is None or value == "":
        if required:
            raise EventInvalid(path, "is required")
        return None
    if not isinstance(value, str):
        raise EventInvalid(path, "must be a string")
    limit = LIMITS[name]
    if len(value) > limit:
        raise EventInvalid(path, f"is {len(value)} characters; the limit is {limit}")
    if CONTROL_RE.search(value):  # shown in terminals and pages: no escape sequences
        raise EventInvalid(path, "contains control characters")
    return value


def _digest(value: Any, path: str) -> str:
    text = _str(value, path, "media_type", required=True) or ""
    if not DIGEST_RE.match(text):
        raise EventInvalid(path, f"{text[:80]!r} is not a sha256 digest (sha256:<64 hex digits>)")
    return text


def _repository(value: Any, path: str) -> str:
    text = _str(value, path, "repository", required=True) or ""
    if not REPOSITORY_RE.match(text):
        raise EventInvalid(path, f"{text[:80]!r} is not a repository name (lowercase path components)")
    return text


def _tag(value: Any, path: str) -> str:
    text = _str(value, path, "tag") or ""
    if text and not TAG_RE.match(text):
        raise EventInvalid(path, f"{text[:80]!r} is not a tag")
    return text


def _host(value: Any, path: str) -> str:
    text = (_str(value, path, "registry", required=True) or "").lower()
    if not HOST_RE.match(text):
        raise EventInvalid(path, f"{text[:80]!r} is not a registry host[:port]")
    return text


def _time(value: Any, path: str) -> datetime:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not 0 <= value < 32503680000:  # before year 3000
            raise EventInvalid(path, f"{value} is not a Unix time")
        return datetime.fromtimestamp(value, tz=timezone.utc)
    text = _str(value, path, "event_id", required=True) or ""
    # Go writes nanoseconds; Python's fromisoformat takes at most microseconds.
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", text.strip()).replace("Z", "+00:00")
    try:
        when = datetime.fromisoformat(trimmed)
    except ValueError:
        raise EventInvalid(path, f"{text[:60]!r} is not an RFC 3339 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


def _p(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _is_manifest(media_type: Optional[str], url: Optional[str], tag: str) -> bool:
    if media_type:
        return media_type in MANIFEST_TYPES
    # Older registries leave mediaType out; the URL still says what was pushed.
    return bool(tag) or (url is not None and "/manifests/" in url)


# -- formats ------------------------------------------------------------------------------------

def _distribution_event(event: Mapping[str, Any], path: str, fmt: str) -> Optional[PushEvent]:
    """One Distribution-style event (also the body of ACR webhooks and Event Grid ``data``)."""
    action = event.get("action")
    target = _obj(event.get("target"), _p(path, "target"))
    tag = _tag(target.get("tag"), _p(path, "target.tag"))
    media_type = _str(target.get("mediaType"), _p(path, "target.mediaType"), "media_type")
    url = target.get("url") if isinstance(target.get("url"), str) else None
    if action != "push" or not _is_manifest(media_type, url, tag) or ATTACHMENT_TAG_RE.match(tag):
        return None
    request = _obj(event.get("request"), _p(path, "request"), required=False)
    actor = _obj(event.get("actor"), _p(path, "actor"), required=False)
    host = request.get("host")
    if not host and url:
        host = urlsplit(url).netloc
    return PushEvent(
        event_id=_str(event.get("id"), _p(path, "id"), "event_id", required=True) or "",
        format=fmt,
        registry=_host(host, _p(path, "request.host")),
        repository=_repository(target.get("repository"), _p(path, "target.repository")),
        tag=tag,
        digest=_digest(target.get("digest"), _p(path, "target.digest")),
        occurred_at=_time(event.get("timestamp"), _p(path, "timestamp")),
        media_type=media_type,
        actor=_str(actor.get("name"), _p(path, "actor.name"), "actor"),
        source_addr=_str(request.get("addr"), _p(path, "request.addr"), "source_addr"),
        user_agent=_str(request.get("useragent"), _p(path, "request.useragent"), "user_agent"),
    )


def _distribution(body: Mapping[str, Any]) -> Parsed:
    events = body.get("events")
    if not isinstance(events, list):
        raise EventInvalid("events", "must be a list")
    _count(events, "events")
    parsed = Parsed("distribution")
    for i, event in enumerate(events):
        _add(parsed, _distribution_event(_obj(event, f"events[{i}]"), f"events[{i}]", "distribution"))
    return parsed


def _event_grid(events: List[Any]) -> Parsed:
    _count(events, "body")
    parsed = Parsed("event-grid")
    for i, raw in enumerate(events):
        path = f"[{i}]"
        event = _obj(raw, path)
        kind = event.get("eventType") or event.get("type")
        data = _obj(event.get("data"), f"{path}.data", required=False)
        if kind == EVENT_GRID_VALIDATION:
            code = data.get("validationCode")
            if not isinstance(code, str) or not 0 < len(code) <= 255:
                raise EventInvalid(f"{path}.data.validationCode", "must be a string of 1 to 255 characters")
            parsed.validation_code = code
            continue
        if kind != EVENT_GRID_PUSHED:
            parsed.ignored += 1
            continue
        # Event Grid's own event id identifies the delivery; data.id is the registry's event id.
        if "id" not in data and "id" in event:
            data = {**data, "id": event["id"]}
        _add(parsed, _distribution_event(data, f"{path}.data", "event-grid"))
    return parsed


def _harbor_id(*parts: str) -> str:
    # The default format carries no event id: a stable one from what identifies the push.
    return "harbor:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:40]


def _harbor(data: Mapping[str, Any], path: str, *, operator: Any, occurred: Any, event_id: Optional[str],
            fmt: str) -> Parsed:
    parsed = Parsed(fmt)
    repo = _obj(data.get("repository"), f"{path}.repository")
    resources = data.get("resources")
    if not isinstance(resources, list):
        raise EventInvalid(f"{path}.resources", "must be a list")
    _count(resources, f"{path}.resources")
    repository = _repository(repo.get("repo_full_name"), f"{path}.repository.repo_full_name")
    actor = _str(operator, "operator", "actor")
    when = _time(occurred, "occur_at" if fmt == "harbor" else "time")
    for i, raw in enumerate(resources):
        rpath = f"{path}.resources[{i}]"
        resource = _obj(raw, rpath)
        url = _str(resource.get("resource_url"), f"{rpath}.resource_url", "repository", required=True) or ""
        host = url.split("/", 1)[0]
        digest = _digest(resource.get("digest"), f"{rpath}.digest")
        tag = _tag(resource.get("tag"), f"{rpath}.tag")
        ident = f"{event_id}:{i}" if event_id else _harbor_id(url, digest, tag, str(occurred), str(operator))
        _add(parsed, PushEvent(
            event_id=_str(ident, "id", "event_id", required=True) or "", format=fmt,
            registry=_host(host, f"{rpath}.resource_url"), repository=repository, tag=tag, digest=digest,
            occurred_at=when, actor=actor))
    return parsed


def _count(items: List[Any], path: str) -> None:
    if len(items) > MAX_EVENTS:
        raise EventInvalid(path, f"has {len(items)} entries; the limit is {MAX_EVENTS} per request")


def _add(parsed: Parsed, event: Optional[PushEvent]) -> None:
    if event is None:
        parsed.ignored += 1
    else:
        parsed.pushes.append(event)


def parse(body: Any) -> Parsed:
    """Recognise the format and return its manifest pushes; raises ``EventInvalid`` naming the field."""
    check_depth(body)
    if isinstance(body, list):
        return _event_grid(body)
    if not isinstance(body, dict):
        raise EventInvalid("body", "must be a JSON object or array")
    if "events" in body:
        return _distribution(body)
    kind = body.get("type") or body.get("eventType")
    if body.get("specversion"):
        if kind == HARBOR_CLOUDEVENT_PUSH:
            event_id = _str(body.get("id"), "id", "event_id", required=True)
            return _harbor(_obj(body.get("data"), "data"), "data", operator=body.get("operator"),
                           occurred=body.get("time"), event_id=event_id, fmt="harbor")
        if kind in (EVENT_GRID_PUSHED, EVENT_GRID_VALIDATION):
            return _event_grid([body])
        return Parsed("cloudevents", ignored=1)
    if kind == HARBOR_PUSH:
        return _harbor(_obj(body.get("event_data"), "event_data"), "event_data", operator=body.get("operator"),
                       occurred=body.get("occur_at"), event_id=None, fmt="harbor")
    if isinstance(kind, str) and kind.isupper():  # other Harbor events: PULL_ARTIFACT, DELETE_ARTIFACT...
        return Parsed("harbor", ignored=1)
    if "eventType" in body:
        return _event_grid([body])
    if "action" in body and "target" in body:
        parsed = Parsed("acr")
        _add(parsed, _distribution_event(body, "", "acr"))
        return parsed
    raise EventInvalid("body", "not a registry notification: expected a Distribution envelope ({\"events\": "
                               "[...]}), an ACR webhook, Event Grid events or a Harbor webhook")
