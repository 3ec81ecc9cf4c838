"""``docker push --all-tags REPO``: one push event for many tags.

An engine with the classic image store logs a single ``push`` event that names the repository
alone (moby ``daemon/images/image_push.go``); one with the containerd image store logs one event
per tag (``daemon/containerd/image_push.go``), which needs nothing from here. The tags pushed are
the repository's tags on the engine at the time of the push: the ones it has now, less those the
daemon's tag events show were first given after the push. Each becomes its own push event, at the
time of the original, and is then resolved like any other (its digest from the image's
``RepoDigests``, which the engine records for every tag it pushes).
"""

from __future__ import annotations

from typing import Any, Iterable, List, Optional

from imagetrail.collector.events import PushEvent, ReferenceHistory
from imagetrail.reference import InvalidReference, parse_reference

MAX_TAGS = 1000  # a repository with more tags than this on one agent is not a CI job's doing


def names_repository_only(event: PushEvent) -> bool:
    """True for the event of ``docker push --all-tags``: no tag, no digest."""
    try:
        ref = parse_reference(event.reference)
    except InvalidReference:
        return False
    return ref.tag is None and ref.digest is None


def tags_at_push(event: PushEvent, images: Iterable[Any], history: Optional[ReferenceHistory]) -> List[str]:
    """The references (``repo:tag``, as the engine spells them) that ``event`` pushed, given the
    engine's images of that repository (``GET /images/json``) and its tag history."""
    name = parse_reference(event.reference).name
    found = set()
    for image in images:
        for reference in (image.get("RepoTags") or []) if isinstance(image, dict) else []:
            if not isinstance(reference, str):
                continue
            try:
                ref = parse_reference(reference)
            except InvalidReference:
                continue
            later = history is not None and history.first_named_after(reference, event.time_ns)
            if ref.name == name and ref.tag and not later:
                found.add(reference)
    return sorted(found)[:MAX_TAGS]


def expand(event: PushEvent, images: Iterable[Any], history: Optional[ReferenceHistory]) -> List[PushEvent]:
    return [PushEvent(reference=reference, time_ns=event.time_ns, name=event.name)
            for reference in tags_at_push(event, images, history)]


def recorded_per_tag(event: PushEvent, others: Iterable[PushEvent]) -> bool:
    """The watcher already recorded this ``--all-tags`` push tag by tag (same repository, same time)."""
    name = parse_reference(event.reference).name
    for other in others:
        if other.time_ns == event.time_ns and other.reference != event.reference:
            try:
                if parse_reference(other.reference).name == name:
                    return True
            except InvalidReference:
                continue
    return False
