"""``imagetrail registry sync``: for registries that cannot notify (GHCR, Docker Hub), walk
catalog -> tags -> manifests and post what changed as push events.

Incremental and resumable: a state file keeps, per registry, the digest last seen for each
repository's tags (a cursor per registry/repository) and where an unfinished catalog walk stopped.
A tag whose digest did not change is not posted again; an interrupted run continues after the last
repository it finished. Events are posted as Distribution envelopes whose user agent says
``imagetrail-registry-sync``, with a stable id per (reference, digest), so a repeat is a duplicate.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, TextIO

from imagetrail import __version__
from imagetrail.remote.oci_registry import RegistryClient, RegistryError

USER_AGENT = f"imagetrail-registry-sync/{__version__}"
BATCH = 500  # events per POST (the endpoint takes up to 1000)


def default_state_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "imagetrail" / "registry-sync.json"


class SyncState:
    """{registry: {"catalog_after": repo | None, "repositories": {repo: {tag: digest}}}} on disk."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.data: Dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.data = {}

    def registry(self, host: str) -> Dict[str, Any]:
        entry = self.data.setdefault(host, {})
        entry.setdefault("catalog_after", None)
        entry.setdefault("repositories", {})
        return entry

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.data, indent=1, sort_keys=True), encoding="utf-8")
        temporary.replace(self.path)  # never a half-written state file


class Progress:
    """One self-overwriting line on a terminal; silent otherwise."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.enabled = stream.isatty()

    def show(self, done: int, total: Optional[int], new: int, current: str) -> None:
        if not self.enabled:
            return
        width = 24
        if total:
            filled = int(width * done / total)
            bar = f"[{'#' * filled}{'-' * (width - filled)}] {done}/{total}"
        else:
            bar = f"{done} repositories"
        self.stream.write(f"\r{bar}  {new} new  {current[:40]:<40}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")


@dataclass
class SyncResult:
    repositories: int = 0
    tags: int = 0
    new: int = 0  # events posted
    failed: int = 0  # tags or repositories that could not be read


def _event(registry: str, repository: str, tag: str, digest: str, media_type: str) -> Dict[str, Any]:
    identity = hashlib.sha256(f"{registry}/{repository}:{tag}@{digest}".encode()).hexdigest()[:40]
    return {
        "id": f"sync:{identity}", "action": "push",
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "target": {"mediaType": media_type or None, "digest": digest, "repository": repository, "tag": tag},
        "request": {"host": registry, "method": "GET", "useragent": USER_AGENT},
    }


def _pages(fetch: Callable[[Optional[str]], Any], after: Optional[str]) -> Iterator[str]:
    while True:
        items, after = fetch(after)
        yield from items
        if after is None:
            return


def sync(client: RegistryClient, registry: str, post: Callable[[List[Dict[str, Any]]], None], state: SyncState,
         repository: Optional[str] = None, progress: Optional[Progress] = None,
         warn: Callable[[str], None] = lambda message: None) -> SyncResult:
    entry = state.registry(registry)
    result = SyncResult()
    if repository:
        names: List[str] = [repository]
    else:
        names = list(_pages(lambda last: client.catalog(registry, last), entry["catalog_after"]))
    for index, name in enumerate(names, 1):
        if progress:
            progress.show(index - 1, len(names), result.new, name)
        known: Dict[str, str] = entry["repositories"].setdefault(name, {})
        events, seen = [], {}
        try:
            tags = list(_pages(lambda last, name=name: client.tags(registry, name, last), None))
        except RegistryError as exc:
            warn(str(exc))
            result.failed += 1
            continue
        for tag in tags:
            result.tags += 1
            try:
                manifest = client.manifest(registry, name, tag)
            except RegistryError as exc:
                warn(str(exc))
                result.failed += 1
                continue
            seen[tag] = manifest.digest
            if known.get(tag) != manifest.digest:
                events.append(_event(registry, name, tag, manifest.digest, manifest.media_type))
        for start in range(0, len(events), BATCH):
            post(events[start:start + BATCH])
        result.new += len(events)
        result.repositories += 1
        entry["repositories"][name] = seen
        if not repository:
            entry["catalog_after"] = name  # resume after this repository if interrupted
        state.save()
    if not repository:
        entry["catalog_after"] = None  # a full pass is done: the next run starts from the top
        state.save()
    if progress:
        progress.show(len(names), len(names), result.new, "")
        progress.close()
    return result


def post_with(api: Any) -> Callable[[List[Dict[str, Any]]], None]:
    def post(events: List[Dict[str, Any]]) -> None:
        api.post("/v1/registry-events", json={"events": events})
    return post


def run(registry: str, repository: Optional[str], state_path: Optional[str], insecure: bool,
        url: Optional[str] = None) -> int:
    from imagetrail.client.api import ApiClient, ApiError

    client = RegistryClient(insecure=[registry] if insecure else ())
    state = SyncState(Path(state_path) if state_path else default_state_path())
    warn = lambda message: print(f"imagetrail registry sync: {message}", file=sys.stderr)  # noqa: E731
    try:
        result = sync(client, registry.lower(), post_with(ApiClient(url=url)), state, repository,
                      Progress(sys.stderr), warn)
    except (RegistryError, ApiError) as exc:
        warn(f"{exc}; the next run resumes where this one stopped")
        return 1
    print(f"{registry}: {result.repositories} repositories, {result.tags} tags, {result.new} new or changed "
          f"pushes posted" + (f", {result.failed} could not be read" if result.failed else ""))
    return 1 if result.failed else 0
