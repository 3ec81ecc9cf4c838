"""The post-job step: which images did this job push, with which digests; report them.

Sources, merged and de-duplicated by (reference, event time): the watcher's records (each
resolved when the push happened), the daemon's event ring buffer for
[job start, now] (which catches pushes the watcher missed, e.g. if it could not start), and
podman's event log where podman is installed (see ``podman``).
Without a pre-job record the pipeline start time bounds the job. Pushes that only the ring
buffer found are resolved after the fact, with the daemon's tag events telling which image
each pushed tag named at the time, so they carry the same fields as the watcher's. The
nothing-pushed path uses the standard library only; docker-py is imported only to resolve
digests or to reach a daemon that is not behind a Unix socket.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Set, Tuple

from imagetrail import __version__
from imagetrail.collector import shared_engine
from imagetrail.collector.console import Console
from imagetrail.collector.context import pipeline_context
from imagetrail.collector.deadline import Deadline
from imagetrail.collector.docker_endpoint import DockerEndpoint, EndpointError, resolve_endpoint
from imagetrail.collector.docker_events import DockerUnavailable, unix_push_events
from imagetrail.collector.events import PushEvent, ReferenceHistory, Resolution, rfc3339
from imagetrail.collector.settings import Settings
from imagetrail.collector.shared_engine import process_alive
from imagetrail.collector.state import JobFiles, JobRecord, read_job_record, read_lines
from imagetrail.collector.watchdog import Watchdog
from imagetrail.reference import InvalidReference, parse_reference
from imagetrail.report import CollectorInfo, PipelineContext, Platform, Push, Report

if TYPE_CHECKING:
    from imagetrail.collector.docker_client import DockerApi

MAX_PUSHES = 5000
MAX_REPORT_WARNINGS = 100


@dataclass
class Discovery:
    pushes: Dict[Tuple[str, int], Tuple[PushEvent, Optional[Resolution]]] = field(default_factory=dict)
    sources: List[str] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)  # printed as warnings
    notes: List[str] = field(default_factory=list)  # for the report's warnings only (an info line is printed)
    registration: Optional[str] = None  # this job's shared-engine registration (pre-job)
    window: Optional[Tuple[int, int]] = None  # the job's [start, now] in ns, once it is known
    not_docker: Set[Tuple[str, int]] = field(default_factory=set)  # resolved by podman, not the engine

    def add(self, event: PushEvent, resolution: Optional[Resolution]) -> None:
        known = self.pushes.get(event.key)
        if known is None or (known[1] is None and resolution is not None):
            self.pushes[event.key] = (event, resolution)


def pipeline_start_ns(env: Mapping[str, str]) -> Optional[int]:
    """``SYSTEM_PIPELINESTARTTIME``, e.g. ``2024-01-18 14:48:39+00:00``."""
    raw = (env.get("SYSTEM_PIPELINESTARTTIME") or "").strip()
    if not raw:
        return None
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def stop_watcher(pid: Optional[int], files: JobFiles) -> None:
    # The command line must name this job's file: guards against a recycled pid.
    if not pid or not process_alive(pid, files.pushes):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        pass  # already gone


def read_watcher(files: JobFiles, start_ns: int, discovery: Discovery) -> bool:
    """Adds the watcher's records; True if the watcher streamed events from the job start."""
    covered = False
    for record in read_lines(files.pushes):
        kind = record.get("type")
        if kind == "watching" and record.get("since") == start_ns:
            covered = True
        elif kind == "push" and isinstance(record.get("event"), dict):
            event = PushEvent.from_json(record["event"])
            if event is not None and event.time_ns >= start_ns:
                discovery.add(event, Resolution.from_json(record.get("resolution")))
    return covered


def daemon_events(endpoint: DockerEndpoint, env: Mapping[str, str], since_ns: int, until_ns: int,
                  deadline: Deadline) -> List[PushEvent]:
    if endpoint.unix_socket:
        raw = unix_push_events(endpoint.unix_socket, since_ns, until_ns, deadline, cap=8.0, reserve=1.5)
    else:
        from imagetrail.collector.docker_client import DockerApi

        api = DockerApi(endpoint, env, timeout=deadline.timeout(8.0, reserve=2.0))
        try:
            raw = api.push_events(since_ns, until_ns)
        finally:
            api.close()
    events = [PushEvent.from_event(item) for item in raw]
    return [e for e in events if e is not None and since_ns <= e.time_ns <= until_ns]


def expand_all_tags(discovery: Discovery, missing: List[Tuple[str, int]], api: "DockerApi",
                    history: Optional[ReferenceHistory]) -> List[Tuple[str, int]]:
    """Replaces each ``push --all-tags`` event (it names the repository alone) by one push per tag
    that was pushed; the keys still to resolve are returned. The watcher, when it ran, already
    recorded the tags: those keys are then known and resolved."""
    from imagetrail.collector import all_tags

    still: List[Tuple[str, int]] = []
    for key in missing:
        event = discovery.pushes[key][0]
        if not all_tags.names_repository_only(event):
            still.append(key)
            continue
        try:
            tagged = all_tags.expand(event, api.repository_images(event.reference), history)
        except DockerUnavailable:
            tagged = []
        if not tagged:
            discovery.pushes[key] = (event, Resolution(
                error="pushed with --all-tags; no tag of the repository is left on the engine to resolve"))
            continue
        del discovery.pushes[key]
        for pushed in tagged:
            if pushed.key not in discovery.pushes:
                discovery.add(pushed, None)
                still.append(pushed.key)
    return still


def resolve_missing(discovery: Discovery, endpoint: Optional[DockerEndpoint], env: Mapping[str, str],
                    deadline: Deadline) -> None:
    """Resolves the pushes the watcher did not (or could not) resolve when they happened."""
    from imagetrail.collector import all_tags

    events = [event for event, _ in discovery.pushes.values()]
    for key, (event, _) in list(discovery.pushes.items()):
        if all_tags.names_repository_only(event) and all_tags.recorded_per_tag(event, events):
            del discovery.pushes[key]
    missing = [key for key, (_, resolution) in discovery.pushes.items()
               if (resolution is None or not resolution.digest) and key not in discovery.not_docker]
    if not missing:
        return
    api = None
    try:
        if endpoint is None:
            raise DockerUnavailable("the Docker endpoint is unknown")
        from imagetrail.collector.docker_client import DockerApi
        from imagetrail.collector.resolve import resolve

        api = DockerApi(endpoint, env, timeout=deadline.timeout(5.0, reserve=2.0))
        try:
            # All the daemon still holds: a tag event before the job start still says what a tag named.
            history: Optional[ReferenceHistory] = ReferenceHistory(api.reference_events(1, time.time_ns()))
        except DockerUnavailable:
            history = None
        missing = expand_all_tags(discovery, missing, api, history)
        for key in missing:
            event, earlier = discovery.pushes[key]
            if deadline.remaining() < 2.0:
                if earlier is None:
                    discovery.pushes[key] = (event, Resolution(error="no time left to resolve the digest"))
                continue
            resolution = resolve(api, event, history.pushed_image(event) if history else None)
            if resolution.digest or earlier is None:
                discovery.pushes[key] = (event, resolution)
    except DockerUnavailable as exc:
        for key in missing:
            if discovery.pushes[key][1] is None:
                discovery.pushes[key] = (discovery.pushes[key][0], Resolution(error=str(exc)[:500]))
    finally:
        if api is not None:
            api.close()


def to_push(event: PushEvent, resolution: Resolution) -> Push:
    try:
        ref = parse_reference(event.reference)
        registry, repository, tag = ref.registry, ref.repository, ref.tag
    except InvalidReference as exc:
        first, _, rest = event.reference.partition("/")
        registry, repository, tag = (first, rest, None) if rest else ("docker.io", first, None)
        registry, repository = registry[:255] or "unknown", repository[:512] or "unknown"
        resolution = Resolution(error=str(exc))
    labels = dict(resolution.labels)
    labels.update(event.labels)  # the push event carries the pushed image's labels as they were
    digest_error = None if resolution.digest else (resolution.error or "the digest could not be resolved")
    return Push(
        reference=event.reference,
        registry=registry,
        repository=repository,
        tag=tag,
        digest=resolution.digest,
        image_id=resolution.image_id,
        pushed_at=rfc3339(event.time_ns),
        labels=labels,
        digest_error=digest_error,
        media_type=resolution.media_type,
        platforms=[Platform(digest=p["digest"], os=p.get("os"), architecture=p.get("architecture"),
                            variant=p.get("variant")) for p in resolution.platforms if p.get("digest")],
    )


def _scrub(context: PipelineContext, console: Console) -> None:
    """A secret never reaches the report, even if a pipeline put one into a context variable."""
    for part in vars(context).values():
        if hasattr(part, "__dataclass_fields__"):
            for name, value in vars(part).items():
                if isinstance(value, str):
                    setattr(part, name, console.mask(value))


def discover(env: Mapping[str, str], context: PipelineContext, deadline: Deadline,
             console: Console) -> Tuple[Discovery, Optional[DockerEndpoint], bool]:
    """Returns the discovered pushes, the endpoint, and whether the job could be bounded at all."""
    discovery = Discovery()
    files = JobFiles.for_job(env, context)
    now_ns = time.time_ns()
    damaged: Optional[str] = None
    try:
        record: Optional[JobRecord] = read_job_record(files)
    except ValueError as exc:
        record, damaged = None, str(exc)
    if record is not None:
        start_ns, start_source = record.start_ns, "job start"
        discovery.registration = record.engine_registration
        stop_watcher(record.watcher_pid, files)
        if read_watcher(files, start_ns, discovery):
            discovery.sources.append("watcher: daemon events streamed from the job start")
        elif record.watcher_pid:
            discovery.sources.append(f"watcher: started but never connected (log: {files.watcher_log})"[:200])
        else:
            discovery.sources.append(f"watcher: not started ({record.watcher_problem})"[:200])
    else:
        start_ns, start_source = pipeline_start_ns(env), "pipeline start (no pre-job record)"
        if start_ns is None:
            discovery.problems.append(
                f"{damaged or 'no pre-job record'}; without SYSTEM_PIPELINESTARTTIME the collector cannot "
                "tell which pushes belong to this job"
            )
            return discovery, None, False
        if damaged:
            discovery.problems.append(f"{damaged}; pushes since the pipeline start are reported instead")
    discovery.window = (start_ns, now_ns)
    try:
        endpoint: Optional[DockerEndpoint] = resolve_endpoint(env)
    except EndpointError as exc:
        discovery.problems.append(str(exc))
        return discovery, None, True
    try:
        for event in daemon_events(endpoint, env, start_ns, now_ns, deadline):
            discovery.add(event, None)
        discovery.sources.append(f"daemon event buffer since the {start_source}"[:200])
    except DockerUnavailable as exc:
        no_docker = (endpoint.source == "default" and endpoint.unix_socket
                     and not os.path.exists(endpoint.unix_socket))
        if not (no_docker and not discovery.pushes):
            discovery.problems.append(f"{exc} ({endpoint.source})")
        discovery.sources.append("daemon event buffer: unavailable")
    return discovery, endpoint, True


def podman_pushes(env: Mapping[str, str], discovery: Discovery, deadline: Deadline, console: Console) -> None:
    """Pushes made with podman in the job window, where podman is installed (its event log is kept
    per user and outlives the job, so reading it at the end is enough). Having podman installed does
    not mean the job used it: a log that cannot be read is noted, not warned about."""
    from imagetrail.collector import podman

    binary = podman.find("podman", env)
    if binary is None or discovery.window is None:
        return
    if deadline.remaining() < podman.MIN_SECONDS:
        discovery.sources.append("podman event log: not read (no time left)")
        return
    try:
        found = podman.push_events(binary, *discovery.window, deadline, env)
    except podman.PodmanUnavailable as exc:
        discovery.sources.append(f"podman event log: unavailable ({exc})"[:200])
        console.info(f"podman's event log was not read: {exc}")
        return
    discovery.sources.append("podman event log since the job start")
    for event, resolution in podman.resolve_all(found, binary, deadline, env):
        discovery.add(event, resolution)
        discovery.not_docker.add(event.key)


def check_shared_engine(discovery: Discovery, endpoint: Optional[DockerEndpoint], env: Mapping[str, str],
                        deadline: Deadline, console: Console) -> None:
    """Closes this job's registration on the engine and, when it pushed, names the other jobs
    that were running on the same engine at the time (their pushes would look like ours)."""
    now_ns = time.time_ns()
    directory = os.path.dirname(discovery.registration) if discovery.registration else None
    try:
        if discovery.registration:
            shared_engine.close(discovery.registration, now_ns)
        if directory is None:
            if not discovery.pushes or endpoint is None:
                return
            directory = shared_engine.engine_directory(env, shared_engine.engine_key(endpoint, deadline))
        times = [event.time_ns for event, _ in discovery.pushes.values()]
        others = shared_engine.other_jobs(directory, discovery.registration, times, now_ns)
    except (OSError, ValueError) as exc:
        if discovery.pushes:
            discovery.sources.append(f"shared-engine: not checked ({type(exc).__name__})")
        return
    if others and discovery.pushes:
        entry, warning, info = shared_engine.describe(others)
        discovery.sources.append(entry)
        discovery.notes.append(console.safe(warning, 2000))
        console.info(info)


def build_report(context: PipelineContext, discovery: Discovery, console: Console) -> Report:
    items = sorted(discovery.pushes.values(), key=lambda item: (item[0].time_ns, item[0].reference))
    pushes = [to_push(event, resolution or Resolution(error="not resolved")) for event, resolution in items]
    _scrub(context, console)
    return Report(
        context=context,
        pushes=pushes[:MAX_PUSHES],
        collector=CollectorInfo(version=__version__, phase="post-job", discovery=discovery.sources[:20]),
        generated_at=rfc3339(time.time_ns()),
        warnings=[w[:2000] for w in (console.warnings + discovery.notes)[:MAX_REPORT_WARNINGS]],
    )


def post_job(settings: Settings, env: Mapping[str, str], console: Console, deadline: Deadline,
             watchdog: Watchdog) -> None:
    context = pipeline_context(env)
    discovery, endpoint, bounded = discover(env, context, deadline, console)
    check_shared_engine(discovery, endpoint, env, deadline, console)
    podman_pushes(env, discovery, deadline, console)
    if not discovery.pushes:
        for problem in discovery.problems:
            console.warning(problem)
        if bounded and not discovery.problems:
            console.info("no image was pushed by this job")
        return
    resolve_missing(discovery, endpoint, env, deadline)
    for problem in discovery.problems:
        console.warning(problem)
    unresolved = [(event.reference, res.error if res else None)
                  for event, res in discovery.pushes.values() if res is None or not res.digest]
    if unresolved:
        reference, reason = unresolved[0]
        console.warning(f"{len(unresolved)} pushed reference(s) reported without a digest; "
                        f"{reference}: {reason or 'not resolved'}")
    report = build_report(context, discovery, console)
    body = report.to_dict()
    from imagetrail.collector.send import send_report

    send_report(body, settings, env, console, deadline, watchdog)
