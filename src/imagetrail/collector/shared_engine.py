"""Jobs that share one Docker engine.

Several agents on one host often use the same engine. The daemon's events do not say which
client pushed, so while another job runs on the engine its pushes look like this job's
(Microsoft Defender's ``docker events`` collection has the same blind spot). The collector
cannot tell such pushes apart, but it can say so. Pre-job registers the job in a directory
per engine under the system temp dir (keyed by the engine's ID from ``GET /info``, else by
the endpoint), with its identity (names and ids, no secrets), its start and its watcher
process; post-job closes the registration and names the other jobs whose window holds one
of this job's pushes.

The directory is under ``/tmp`` on POSIX hosts - not ``$TMPDIR``, which an agent may point
at its own per-job directory (``VSTS_OVERWRITE_TEMP``) - and the system temp dir on Windows;
``IMAGETRAIL_ENGINE_DIR`` names another place (e.g. when each agent has a private ``/tmp``).

Stale registrations are ignored and removed: an open one whose watcher is gone (a cancelled
job; the watcher also stops when the agent removes the job's temp dir), and a closed one
once no open job started before it closed (nobody can need it any more).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional

from imagetrail.collector.deadline import Deadline
from imagetrail.collector.docker_endpoint import DockerEndpoint
from imagetrail.collector.docker_events import DockerUnavailable, unix_engine_id
from imagetrail.collector.text import clean
from imagetrail.report import PipelineContext

ROOT_NAME = "imagetrail-engines"
MAX_FILE_BYTES = 64 * 1024
MAX_REGISTRATIONS = 500  # read per post-job; a busy host has a few dozen at most
HEARTBEAT_SECONDS = 15.0  # the watcher touches its registration this often
HEARTBEAT_STALE_SECONDS = 90.0  # a registration from another host/namespace is dead without a touch this long
MAX_WINDOW_SECONDS = 48 * 3600  # no job runs longer (the watcher's own limit)
DAMAGED_GRACE_SECONDS = 60.0
IDENTITY_FIELDS = ("system", "organization", "project", "pipeline", "run", "runAttempt", "job", "jobAttempt")


def engine_key(endpoint: DockerEndpoint, deadline: Deadline) -> str:
    """The engine's ID when the lean client can ask for it (Unix socket); else the endpoint."""
    if endpoint.unix_socket:
        try:
            return "engine:" + unix_engine_id(endpoint.unix_socket, deadline, cap=2.0, reserve=1.0)
        except DockerUnavailable:
            return "endpoint:unix://" + os.path.realpath(endpoint.unix_socket)
    return "endpoint:" + endpoint.host


def engines_root(env: Mapping[str, str]) -> str:
    configured = (env.get("IMAGETRAIL_ENGINE_DIR") or "").strip()
    if configured:
        return configured
    if os.name != "nt" and os.path.isdir("/tmp"):
        return os.path.join("/tmp", ROOT_NAME)
    import tempfile  # not on the hot path: post-job finds its registration in the job record

    return os.path.join(tempfile.gettempdir(), ROOT_NAME)


def engine_directory(env: Mapping[str, str], key: str) -> str:
    return os.path.join(engines_root(env), hashlib.sha256(key.encode("utf-8")).hexdigest()[:24])


def _host_identity() -> str:
    """Where a pid means something: the host name and, on Linux, the pid namespace."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}/{namespace}"[:300]


def process_alive(pid: int, marker: Optional[str]) -> bool:
    """Whether ``pid`` runs and (where /proc shows it) its command line names ``marker``,
    which guards against a recycled pid and a zombie. POSIX only: on Windows ``os.kill``
    would terminate the process."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's live process
    except OSError:
        return False
    if not marker:
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return marker.encode() in handle.read()
    except FileNotFoundError:
        return not os.path.isdir("/proc")  # no procfs (macOS): trust the pid
    except OSError:
        return True  # hidden by hidepid: the pid is alive, trust it


def job_identity(context: PipelineContext, mask: Any = None) -> Dict[str, Optional[str]]:
    """Names and ids only, cleaned and bounded; ``mask`` hides secret values."""
    raw = {
        "system": context.system,
        "organization": context.organization.name or context.organization.id,
        "project": context.project.name or context.project.id,
        "pipeline": context.pipeline.name or context.pipeline.id,
        "run": context.run.number or context.run.id,
        "runAttempt": context.run.attempt,
        "job": context.job.name or context.job.id,
        "jobAttempt": context.job.attempt,
    }
    identity: Dict[str, Optional[str]] = {}
    for key, value in raw.items():
        text = None if value is None else str(value)
        identity[key] = clean(mask(text) if (mask and text) else text, 200)
    return identity


@dataclass
class Registration:
    path: str
    identity: Dict[str, Optional[str]]
    start_ns: int
    end_ns: Optional[int] = None
    host: str = ""
    pid: Optional[int] = None
    marker: Optional[str] = None
    modified: float = field(default=0.0, compare=False)

    def to_json(self) -> Dict[str, Any]:
        return {"version": 1, "job": self.identity, "startNs": self.start_ns, "endNs": self.end_ns,
                "host": self.host, "watcherPid": self.pid, "watcherMarker": self.marker}

    @classmethod
    def from_json(cls, path: str, data: Any, modified: float) -> "Registration":
        if not isinstance(data, dict) or not isinstance(data.get("startNs"), int) or data["startNs"] <= 0:
            raise ValueError("startNs is missing")
        job = data.get("job") if isinstance(data.get("job"), dict) else {}
        identity = {k: clean(str(job[k]), 200) if job.get(k) is not None else None for k in IDENTITY_FIELDS}
        end, pid = data.get("endNs"), data.get("watcherPid")
        host, marker = data.get("host"), data.get("watcherMarker")
        return cls(path=path, identity=identity, start_ns=data["startNs"],
                   end_ns=end if isinstance(end, int) and end > 0 else None,
                   host=host if isinstance(host, str) else "",
                   pid=pid if isinstance(pid, int) and pid > 0 else None,
                   marker=marker if isinstance(marker, str) else None, modified=modified)

    @property
    def label(self) -> str:
        """How the job is named in messages: project/pipeline run N job J."""
        job = self.identity
        where = "/".join(x for x in (job.get("organization"), job.get("project")) if x)
        attempt = f" (attempt {job['jobAttempt']})" if job.get("jobAttempt") not in (None, "1") else ""
        return (f"{where + ' ' if where else ''}pipeline '{job.get('pipeline') or '?'}' "
                f"run {job.get('run') or '?'} job '{job.get('job') or '?'}'{attempt}")

    def alive(self, host: str, now: float) -> bool:
        if self.host == host and self.pid and os.name != "nt":
            return process_alive(self.pid, self.marker)
        return now - self.modified <= HEARTBEAT_STALE_SECONDS  # another host or namespace: its heartbeat

    def holds(self, time_ns: int) -> bool:
        return self.start_ns <= time_ns and (self.end_ns is None or time_ns <= self.end_ns)


def _make_directory(path: str) -> None:
    """World-writable with the sticky bit, like /tmp: agents of other users register too,
    and only a file's owner can replace or remove it. A link, or another user's directory
    without the sticky bit, is refused (someone else could swap our files)."""
    for directory in (os.path.dirname(path), path):
        try:
            os.mkdir(directory, 0o1777)
        except FileExistsError:
            pass
        else:
            try:
                os.chmod(directory, 0o1777)  # mkdir's mode is reduced by the umask
            except OSError:
                pass
        info = os.lstat(directory)
        if not stat.S_ISDIR(info.st_mode):
            raise NotADirectoryError(f"{directory} is not a directory")
        ours = not hasattr(os, "getuid") or info.st_uid in (os.getuid(), 0)
        if not ours and not info.st_mode & stat.S_ISVTX:
            raise PermissionError(f"{directory} belongs to another user and is not sticky")


def _write(path: str, data: Dict[str, Any]) -> None:
    """Atomic, and never through a link someone else planted in the shared directory."""
    tmp = os.path.join(os.path.dirname(path), f".{os.urandom(8).hex()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass  # gone already, or another user's file in the sticky directory


def _read(path: str) -> Registration:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        modified = os.fstat(handle.fileno()).st_mtime
        raw = handle.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise ValueError("too large")
    return Registration.from_json(path, json.loads(raw.decode("utf-8", "replace")), modified)


def registration_path(directory: str, job_key: str) -> str:
    return os.path.join(directory, f"job-{job_key}.json")


def register(path: str, identity: Dict[str, Optional[str]], start_ns: int, watcher_pid: Optional[int],
             watcher_marker: Optional[str]) -> str:
    """Pre-job: this job runs on the engine from ``start_ns``, kept open by its watcher."""
    _make_directory(os.path.dirname(path))
    _write(path, Registration(path=path, identity=identity, start_ns=start_ns, host=_host_identity(),
                              pid=watcher_pid, marker=watcher_marker).to_json())
    return path


def heartbeat(path: str) -> None:
    try:
        os.utime(path)
    except OSError:
        pass


def close(path: str, end_ns: int) -> None:
    """Post-job: the job's window ends now (the registration stays while another job may need it)."""
    try:
        registration = _read(path)
    except (OSError, ValueError):
        return
    if registration.end_ns is None:
        registration.end_ns = end_ns
        _write(path, registration.to_json())


def _registrations(directory: str, now: float) -> Iterable[Registration]:
    try:
        names = sorted(os.listdir(directory))[:MAX_REGISTRATIONS]
    except OSError:
        return
    for name in names:
        path = os.path.join(directory, name)
        if name.endswith(".tmp"):
            try:
                if now - os.lstat(path).st_mtime > DAMAGED_GRACE_SECONDS:
                    _remove(path)  # left by a writer that died
            except OSError:
                pass
            continue
        if not (name.startswith("job-") and name.endswith(".json")):
            continue
        try:
            yield _read(path)
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            try:
                if now - os.lstat(path).st_mtime > DAMAGED_GRACE_SECONDS:
                    _remove(path)
            except OSError:
                pass


def other_jobs(directory: str, own_path: Optional[str], push_times_ns: List[int],
               now_ns: Optional[int] = None) -> List[Registration]:
    """Post-job, after ``close``: the other jobs that were running on the engine at one of
    ``push_times_ns``. Removes stale registrations on the way."""
    now = time.time()
    now_ns = now_ns or time.time_ns()
    host = _host_identity()
    live: List[Registration] = []
    closed: List[Registration] = []
    for registration in _registrations(directory, now):
        if registration.end_ns is None:
            if registration.alive(host, now):
                live.append(registration)
            else:
                _remove(registration.path)  # its job ended without post-job: ignored
        elif now_ns - registration.end_ns > MAX_WINDOW_SECONDS * 1_000_000_000:
            _remove(registration.path)
        else:
            closed.append(registration)
    own = os.path.abspath(own_path) if own_path else None
    found = [r for r in live + closed
             if os.path.abspath(r.path) != own and any(r.holds(t) for t in push_times_ns)]
    for registration in closed:
        # Needed only by a job still running that started before this one closed.
        if not any(other.start_ns <= (registration.end_ns or 0) for other in live):
            _remove(registration.path)
    return sorted(found, key=lambda r: (r.start_ns, r.path))


def describe(others: List[Registration]) -> "tuple[str, str, str]":
    """The discovery entry, the report warning and the info line for ``others`` (not empty)."""
    count = len(others)
    noun = "job" if count == 1 else "jobs"
    names = "; ".join(r.label for r in others[:10]) + (f"; and {count - 10} more" if count > 10 else "")
    entry = f"shared-engine:{count}-other-{noun}"
    warning = (f"shared Docker engine: {count} other {noun} used this job's Docker engine while it pushed, "
               f"so some pushes in this report may be theirs: {names}")
    info = (f"this job's Docker engine is shared: {count} other {noun} ran on it while this job pushed "
            f"({names}); the report's warnings say so")
    return entry, warning[:2000], info
