"""Push events as the daemon reports them, and what the collector learns about each push."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple

from imagetrail.reference import DIGEST_RE, InvalidReference, parse_reference

OCI_LABEL_PREFIX = "org.opencontainers.image."
# Image events that set what a reference points to (``docker tag``/``build -t``/``import``,
# ``pull``, ``load``), plus pushes. Untag events name the image id only, so they cannot be used.
REFERENCE_ACTIONS = ("tag", "pull", "load", "push")
MAX_LABELS = 200
MAX_LABEL_VALUE = 4096


def oci_labels(labels: Optional[Dict[str, Any]]) -> Dict[str, str]:
    """Only ``org.opencontainers.image.*`` labels, bounded as the report schema requires."""
    result: Dict[str, str] = {}
    for key, value in sorted((labels or {}).items()):
        if len(result) >= MAX_LABELS:
            break
        if (isinstance(key, str) and key.startswith(OCI_LABEL_PREFIX) and len(key) <= 256
                and isinstance(value, str)):
            result[key] = value[:MAX_LABEL_VALUE]
    return result


def rfc3339(ns: int) -> str:
    seconds, nanos = divmod(int(ns), 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


@dataclass(frozen=True)
class PushEvent:
    """``{"Type":"image","Action":"push","Actor":{"ID": <reference as pushed>, "Attributes":
    {"name": <repository>, <image labels>...}},"timeNano": ...}`` - the event carries no digest."""

    reference: str
    time_ns: int
    name: Optional[str] = None
    labels: Dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> Tuple[str, int]:
        return (self.reference, self.time_ns)

    @classmethod
    def from_event(cls, event: Dict[str, Any]) -> Optional["PushEvent"]:
        if not isinstance(event, dict) or event.get("Type") != "image" or event.get("Action") != "push":
            return None
        actor = event.get("Actor") if isinstance(event.get("Actor"), dict) else {}
        reference = actor.get("ID") or event.get("id")
        time_ns = event.get("timeNano")
        if not isinstance(time_ns, int):
            seconds = event.get("time")
            time_ns = int(seconds) * 1_000_000_000 if isinstance(seconds, (int, float)) else None
        if not isinstance(reference, str) or not reference or time_ns is None:
            return None
        attributes = actor.get("Attributes") if isinstance(actor.get("Attributes"), dict) else {}
        name = attributes.get("name") if isinstance(attributes.get("name"), str) else None
        return cls(reference=reference[:1024], time_ns=time_ns, name=name, labels=oci_labels(attributes))

    def to_json(self) -> Dict[str, Any]:
        return {"reference": self.reference, "timeNano": self.time_ns, "name": self.name,
                "labels": self.labels}

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> Optional["PushEvent"]:
        reference, time_ns = data.get("reference"), data.get("timeNano")
        if not isinstance(reference, str) or not reference or not isinstance(time_ns, int):
            return None
        name = data.get("name") if isinstance(data.get("name"), str) else None
        labels = data.get("labels") if isinstance(data.get("labels"), dict) else {}
        return cls(reference=reference[:1024], time_ns=time_ns, name=name, labels=oci_labels(labels))


@dataclass
class Resolution:
    """What the daemon said about a pushed reference, at the time it was asked."""

    digest: Optional[str] = None
    image_id: Optional[str] = None
    labels: Dict[str, str] = field(default_factory=dict)
    media_type: Optional[str] = None
    platforms: List[Dict[str, Optional[str]]] = field(default_factory=list)
    error: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        return {"digest": self.digest, "imageId": self.image_id, "labels": self.labels,
                "mediaType": self.media_type, "platforms": self.platforms, "error": self.error}

    @classmethod
    def from_json(cls, data: Any) -> "Resolution":
        if not isinstance(data, dict):
            return cls(error="the watcher record has no resolution")
        platforms = [p for p in data.get("platforms") or [] if isinstance(p, dict)]
        return cls(
            digest=data.get("digest") if isinstance(data.get("digest"), str) else None,
            image_id=data.get("imageId") if isinstance(data.get("imageId"), str) else None,
            labels=oci_labels(data.get("labels") if isinstance(data.get("labels"), dict) else {}),
            media_type=data.get("mediaType") if isinstance(data.get("mediaType"), str) else None,
            platforms=platforms,
            error=data.get("error") if isinstance(data.get("error"), str) else None,
        )


def canonical_reference(text: Any) -> Optional[str]:
    """``alpine`` and ``docker.io/library/alpine:latest`` name the same thing."""
    if not isinstance(text, str):
        return None
    try:
        ref = parse_reference(text)
    except InvalidReference:
        return None
    return f"{ref.name}@{ref.digest}" if ref.digest else f"{ref.name}:{ref.tag or 'latest'}"


@dataclass(frozen=True)
class PushedImage:
    """What the daemon's events say about the image a push sent, when it is resolved later."""

    image_id: Optional[str] = None  # from the reference's last tag event before the push
    changed_since: bool = False  # the reference was re-tagged, pulled or loaded after the push
    pushed_again_since_change: bool = False  # ... and pushed again: the registry has the later image


class ReferenceHistory:
    """Which image each reference pointed to over time, from the daemon's image events.

    Needed when a push is resolved after the fact (no watcher): by then the pushed tag may
    point to another image, or the image may be gone."""

    def __init__(self, events: Iterable[Dict[str, Any]]) -> None:
        self._changes: Dict[str, List[Tuple[int, Optional[str]]]] = {}
        self._pushes: Dict[str, List[int]] = {}
        for event in events:
            self._add(event)
        for changes in self._changes.values():
            changes.sort(key=lambda change: change[0])

    def _add(self, event: Any) -> None:
        if not isinstance(event, dict) or event.get("Type") != "image":
            return
        action, time_ns = event.get("Action"), event.get("timeNano")
        actor = event.get("Actor") if isinstance(event.get("Actor"), dict) else {}
        attributes = actor.get("Attributes") if isinstance(actor.get("Attributes"), dict) else {}
        actor_id = actor.get("ID")
        if not isinstance(time_ns, int):
            return
        if action == "tag":
            reference = canonical_reference(attributes.get("name"))
            image_id = actor_id if isinstance(actor_id, str) and DIGEST_RE.match(actor_id) else None
            if reference:
                self._changes.setdefault(reference, []).append((time_ns, image_id))
        elif action in ("pull", "load"):
            if isinstance(actor_id, str) and not DIGEST_RE.match(actor_id):
                reference = canonical_reference(actor_id)
                if reference:
                    self._changes.setdefault(reference, []).append((time_ns, None))
        elif action == "push":
            reference = canonical_reference(actor_id)
            if reference:
                self._pushes.setdefault(reference, []).append(time_ns)

    def first_named_after(self, reference: str, time_ns: int) -> bool:
        """The daemon's events show ``reference`` only being set after ``time_ns`` (a tag
        created after a push, so not part of it)."""
        changes = self._changes.get(canonical_reference(reference) or "", [])
        return bool(changes) and all(changed > time_ns for changed, _ in changes)

    def pushed_image(self, event: PushEvent) -> PushedImage:
        reference = canonical_reference(event.reference)
        if reference is None:
            return PushedImage()
        changes = self._changes.get(reference, [])
        before = [image_id for time_ns, image_id in changes if time_ns <= event.time_ns]
        after = [time_ns for time_ns, _ in changes if time_ns > event.time_ns]
        pushed_again = bool(after) and any(t > after[0] for t in self._pushes.get(reference, []))
        return PushedImage(image_id=before[-1] if before else None, changed_since=bool(after),
                           pushed_again_since_change=pushed_again)
