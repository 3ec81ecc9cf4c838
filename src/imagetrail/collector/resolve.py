"""Finding what a push sent: the manifest digest, the local image id and its OCI labels.

Which image: the one the pushed reference names now - unless the daemon's events show that
the reference changed after the push (``PushedImage``, when resolved after the fact); then
the image its tag event named at the time, looked up by id. Digest: in the reference
itself; else the image's ``RepoDigests`` entry for the pushed repository (what ``docker
push`` recorded, no network); else the registry's descriptor through the daemon
(``GET /distribution/{name}/json``) - unless the tag was moved and pushed again since, when
the registry only knows the later image. If nothing works, the push is kept with
``digest: null`` and the reason - never dropped.
"""

from __future__ import annotations

from typing import Any, Optional, Set

from imagetrail.collector.events import PushedImage, PushEvent, Resolution, oci_labels
from imagetrail.reference import DIGEST_RE, ImageReference, InvalidReference, parse_reference

INDEX_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:299] + "\u2026"


def _repo_digests(image: Any, ref: ImageReference) -> Set[str]:
    found: Set[str] = set()
    for entry in (image.get("RepoDigests") or []) if isinstance(image, dict) else []:
        if not isinstance(entry, str) or "@" not in entry:
            continue
        name, digest = entry.split("@", 1)
        try:
            same = parse_reference(name).name == ref.name
        except InvalidReference:
            same = False
        if same and DIGEST_RE.match(digest):
            found.add(digest)
    return found


def _inspect(api: Any, name: str) -> "tuple[Optional[dict], Optional[str]]":
    try:
        image = api.inspect_image(name)
    except Exception as exc:  # noqa: BLE001 - any daemon failure becomes the recorded reason
        return None, f"inspecting the image failed: {_short(exc)}"
    return (image, None) if isinstance(image, dict) else (None, None)


def resolve(api: Any, event: PushEvent, pushed: Optional[PushedImage] = None) -> Resolution:
    """``api`` is a ``docker_client.DockerApi``; ``pushed`` what the events say about the pushed
    image (None when resolving right after the push). Never raises: failures become the reason."""
    try:
        ref = parse_reference(event.reference)
    except InvalidReference as exc:
        return Resolution(error=_short(exc))
    pushed = pushed or PushedImage()
    result = Resolution(digest=ref.digest, image_id=pushed.image_id)
    image, image_problem = None, None
    if not pushed.changed_since:
        image, image_problem = _inspect(api, event.reference)
        if image is not None and pushed.image_id and image.get("Id") != pushed.image_id:
            image = None  # the tag names another image now
    if image is None and pushed.image_id:
        image, problem = _inspect(api, pushed.image_id)
        image_problem = image_problem or problem
    if image is not None:
        image_id = image.get("Id")
        result.image_id = image_id if isinstance(image_id, str) and DIGEST_RE.match(image_id) else None
        result.labels = oci_labels((image.get("Config") or {}).get("Labels"))
        if result.digest is None:
            candidates = _repo_digests(image, ref)
            if len(candidates) == 1:
                result.digest = candidates.pop()
            elif candidates:
                image_problem = f"the image has {len(candidates)} digests for {ref.name}"
            else:
                image_problem = f"the image has no digest for {ref.name} (re-tagged since the push?)"
    elif image_problem is None:
        image_problem = ("the reference names another image since the push" if pushed.changed_since
                         else "the image is no longer on the daemon")
    if result.digest is not None:
        return result
    if pushed.pushed_again_since_change:
        result.error = (f"{image_problem}; {event.reference} was re-tagged and pushed again later, "
                        "so the registry only knows the later image")
        return result
    try:
        descriptor = (api.distribution(event.reference) or {}).get("Descriptor") or {}
    except Exception as exc:  # noqa: BLE001
        result.error = f"{image_problem}; the registry lookup failed: {_short(exc)}"
        return result
    digest = descriptor.get("digest")
    if isinstance(digest, str) and DIGEST_RE.match(digest):
        result.digest = digest
        media_type = descriptor.get("mediaType")
        result.media_type = media_type if isinstance(media_type, str) else None
    else:
        result.error = f"{image_problem}; the registry returned no sha256 digest"
    return result
