"""Pushes made with podman (common on RHEL self-hosted agents), from podman's own event log.

podman keeps its events per user (journald or a file, as containers.conf says), so they are read
with the podman CLI, as the job's user: ``podman events --since T --stream=false --filter
event=push --format json``. ``--until`` is not used: podman 4 waits until that moment instead of
stopping there, so the end of the job window is applied here. Each event names the pushed
destination (``Name``; ``docker://`` when the user wrote the transport) and the local image
(``ID``), but no digest; and podman may convert the manifest while pushing, so the local image's
digest is not the pushed one. The digest is the registry's, read with skopeo (``skopeo inspect
--raw``: the same auth files and registries.conf as podman) - for a tag the job pushed twice, only
the last push can be resolved that way. Only started where ``podman`` is on PATH.
"""

from __future__ import annotations

import json
import os
import re
from typing import Dict, List, Mapping, Optional, Tuple

from imagetrail.collector.deadline import Deadline
from imagetrail.collector.events import PushEvent, Resolution, oci_labels
from imagetrail.reference import DIGEST_RE, InvalidReference, parse_reference

TIME_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")
MAX_OUTPUT_BYTES = 16 * 1024 * 1024
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # the registry's own limit for a manifest
LOOPBACK_HOSTS = ("localhost", "127.", "[::1]")
MIN_SECONDS = 3.0  # below this much time left, podman's log is not read (delivery needs the rest)


class PodmanUnavailable(Exception):
    """podman (or skopeo) could not be asked."""


def find(tool: str, env: Mapping[str, str]) -> Optional[str]:
    import shutil

    return shutil.which(tool, path=env.get("PATH") or os.defpath)


def _run(command: List[str], deadline: Deadline, env: Mapping[str, str],
         cap: float) -> Tuple[int, bytes, str]:
    import subprocess  # only where podman is installed: not on the usual nothing-pushed path

    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, env=dict(env),
                              timeout=deadline.timeout(cap, reserve=2.0))
    except subprocess.TimeoutExpired:
        raise PodmanUnavailable(f"{os.path.basename(command[0])} did not answer in time") from None
    except OSError as exc:
        raise PodmanUnavailable(f"cannot run {os.path.basename(command[0])}: {exc}") from None
    if len(done.stdout) > MAX_OUTPUT_BYTES:
        tool = os.path.basename(command[0])
        raise PodmanUnavailable(f"{tool} answered with more than {MAX_OUTPUT_BYTES} bytes")
    error = done.stderr.decode("utf-8", "replace").strip().splitlines()
    return done.returncode, done.stdout, (error[-1] if error else f"exit code {done.returncode}")[:300]


def parse_time(text: object) -> Optional[int]:
    """podman's RFC 3339 time with nanoseconds and an offset -> nanoseconds since the epoch."""
    match = TIME_RE.match(text) if isinstance(text, str) else None
    if not match:
        return None
    from calendar import timegm

    whole, fraction, zone = match.groups()
    seconds = timegm((int(whole[0:4]), int(whole[5:7]), int(whole[8:10]), int(whole[11:13]),
                      int(whole[14:16]), int(whole[17:19]), 0, 0, 0))
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))


def registry_reference(name: object) -> Optional[str]:
    """The pushed registry reference; None for other transports (oci-archive:, dir:, ...)."""
    if not isinstance(name, str) or not name:
        return None
    if name.startswith("docker://"):
        name = name[len("docker://"):]
    elif re.match(r"^[a-z-]+:(?!\d)", name):
        return None  # a transport other than a registry (e.g. oci-archive:/tmp/x.tar)
    try:
        parse_reference(name)
    except InvalidReference:
        return None
    return name


def push_events(podman: str, since_ns: int, until_ns: int, deadline: Deadline,
                env: Mapping[str, str]) -> List[Tuple[PushEvent, Optional[str]]]:
    """Push events in [since, until] with the local image id of each."""
    since = f"{since_ns // 1_000_000_000}.{since_ns % 1_000_000_000:09d}"
    code, out, error = _run([podman, "events", "--since", since, "--stream=false", "--filter", "event=push",
                             "--format", "json"], deadline, env, cap=8.0)
    if code != 0:
        raise PodmanUnavailable(f"podman events failed: {error}")
    found = []
    for line in out.decode("utf-8", "replace").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if not isinstance(item, dict) or item.get("Type") != "image" or item.get("Status") != "push":
            continue
        time_ns, reference = parse_time(item.get("Time")), registry_reference(item.get("Name"))
        if time_ns is None or reference is None or not since_ns <= time_ns <= until_ns:
            continue
        image_id = item.get("ID") if isinstance(item.get("ID"), str) else None
        name = parse_reference(reference).name
        found.append((PushEvent(reference=reference[:1024], time_ns=time_ns, name=name), image_id))
    return found


def _loopback(reference: str) -> bool:
    return parse_reference(reference).registry.startswith(LOOPBACK_HOSTS)


def registry_manifest(skopeo: str, reference: str, deadline: Deadline, env: Mapping[str, str]) -> bytes:
    command = [skopeo, "inspect", "--raw", "--retry-times", "0", "docker://" + reference]
    code, out, error = _run(command, deadline, env, cap=8.0)
    if code != 0 and _loopback(reference) and "HTTP response to HTTPS client" in error:
        # As the Docker engine does, a registry on the loopback interface may speak plain HTTP.
        code, out, error = _run(command[:2] + ["--tls-verify=false"] + command[2:], deadline, env, cap=8.0)
    if code != 0:
        raise PodmanUnavailable(f"skopeo inspect {reference} failed: {error}")
    if len(out) > MAX_MANIFEST_BYTES:
        raise PodmanUnavailable(f"the manifest of {reference} is larger than {MAX_MANIFEST_BYTES} bytes")
    return out


def image_labels(podman: str, image_ids: List[str], deadline: Deadline,
                 env: Mapping[str, str]) -> Dict[str, Dict[str, str]]:
    """OCI labels of the local images, by id (one podman call for all)."""
    if not image_ids:
        return {}
    code, out, _ = _run([podman, "image", "inspect", "--format", "json", *image_ids], deadline, env, cap=5.0)
    try:
        images = json.loads(out.decode("utf-8", "replace")) if code == 0 else []
    except ValueError:
        images = []
    labels: Dict[str, Dict[str, str]] = {}
    for image in images if isinstance(images, list) else []:
        if isinstance(image, dict) and isinstance(image.get("Id"), str):
            found = image.get("Labels")
            labels[image["Id"]] = oci_labels(found if isinstance(found, dict) else {})
    return labels


def resolve_all(pushes: List[Tuple[PushEvent, Optional[str]]], podman: str, deadline: Deadline,
                env: Mapping[str, str]) -> List[Tuple[PushEvent, Resolution]]:
    """A Resolution for every podman push: digest and media type from the registry, labels from podman."""
    import hashlib

    labels = image_labels(podman, sorted({i for _, i in pushes if i}), deadline, env)
    last = {event.reference: event.time_ns for event, _ in pushes}
    for event, _ in pushes:
        last[event.reference] = max(last[event.reference], event.time_ns)
    skopeo = find("skopeo", env)
    resolved = []
    for event, image_id in pushes:
        resolution = Resolution(image_id=_image_id(image_id), labels=labels.get(image_id or "", {}))
        if last[event.reference] != event.time_ns:
            resolution.error = "pushed again later in the job; the registry only knows the later image"
        elif skopeo is None:
            resolution.error = "skopeo is not installed, so the digest podman pushed cannot be read"
        elif deadline.remaining() < MIN_SECONDS:
            resolution.error = "no time left to resolve the digest"
        else:
            try:
                manifest = registry_manifest(skopeo, event.reference, deadline, env)
                resolution.digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
                media_type = json.loads(manifest.decode("utf-8", "replace")).get("mediaType")
                resolution.media_type = media_type if isinstance(media_type, str) else None
            except (PodmanUnavailable, ValueError, AttributeError) as exc:
                resolution.error = str(exc)[:500]
        resolved.append((event, resolution))
    return resolved


def _image_id(value: Optional[str]) -> Optional[str]:
    if value and DIGEST_RE.match("sha256:" + value):
        return "sha256:" + value
    return value if value and DIGEST_RE.match(value) else None
