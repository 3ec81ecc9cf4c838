"""Files shared by the pre-job step, the watcher and the post-job step of one job.

They live in the agent's per-job temp directory (Azure: ``AGENT_TEMPDIRECTORY``, GitHub:
``RUNNER_TEMP``), else in a per-user directory under the system temp dir, and are named
after the job so that jobs sharing a temp dir do not read each other's records.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Mapping, Optional

from imagetrail.report import PipelineContext

MAX_RECORD_BYTES = 1024 * 1024


def base_dir(env: Mapping[str, str]) -> str:
    for name in ("AGENT_TEMPDIRECTORY", "RUNNER_TEMP"):
        value = (env.get(name) or "").strip()
        if value and os.path.isdir(value):
            return os.path.join(value, "imagetrail")
    import tempfile  # only here: it costs the hot path (post-job on an agent) several ms to import

    suffix = f"-{os.getuid()}" if hasattr(os, "getuid") else ""
    return os.path.join(tempfile.gettempdir(), f"imagetrail{suffix}")


def job_key(context: PipelineContext) -> str:
    parts = [context.system, context.server_url, context.organization.id or context.organization.name,
             context.project.id or context.project.name, context.run.id, context.run.attempt,
             context.job.id or context.job.name, context.job.attempt]
    return hashlib.sha256(json.dumps(parts, default=str).encode("utf-8")).hexdigest()[:20]


@dataclass(frozen=True)
class JobFiles:
    directory: str
    key: str

    @classmethod
    def for_job(cls, env: Mapping[str, str], context: PipelineContext) -> "JobFiles":
        return cls(directory=base_dir(env), key=job_key(context))

    @property
    def job(self) -> str:
        return os.path.join(self.directory, f"job-{self.key}.json")

    @property
    def pushes(self) -> str:
        return os.path.join(self.directory, f"job-{self.key}.pushes.jsonl")

    @property
    def watcher_log(self) -> str:
        return os.path.join(self.directory, f"job-{self.key}.watcher.log")

    def ensure_directory(self) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)


@dataclass
class JobRecord:
    """Written by pre-job: when the job started and which watcher process records its pushes."""

    start_ns: int
    docker_host: Optional[str] = None
    watcher_pid: Optional[int] = None
    watcher_problem: Optional[str] = None
    engine_registration: Optional[str] = None  # this job's file in the engine's shared directory

    def to_json(self) -> Dict[str, Any]:
        return {"startNs": self.start_ns, "dockerHost": self.docker_host, "watcherPid": self.watcher_pid,
                "watcherProblem": self.watcher_problem, "engineRegistration": self.engine_registration}

    @classmethod
    def from_json(cls, data: Any) -> "JobRecord":
        if not isinstance(data, dict) or not isinstance(data.get("startNs"), int) or data["startNs"] <= 0:
            raise ValueError("startNs is missing or not a positive integer")
        pid = data.get("watcherPid")
        host = data.get("dockerHost")
        problem = data.get("watcherProblem")
        registration = data.get("engineRegistration")
        return cls(start_ns=data["startNs"], docker_host=host if isinstance(host, str) else None,
                   watcher_pid=pid if isinstance(pid, int) and pid > 0 else None,
                   watcher_problem=problem if isinstance(problem, str) else None,
                   engine_registration=registration if isinstance(registration, str) and registration
                   else None)


def write_json_atomically(path: str, data: Dict[str, Any]) -> None:
    """Readers never see a half-written file: write a sibling, then rename over the target."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    os.replace(tmp, path)


def read_job_record(files: JobFiles) -> Optional[JobRecord]:
    """None when pre-job did not run for this job; ValueError when the file is damaged."""
    try:
        with open(files.job, encoding="utf-8") as handle:
            raw = handle.read(MAX_RECORD_BYTES)
    except FileNotFoundError:
        return None
    try:
        return JobRecord.from_json(json.loads(raw))
    except ValueError as exc:
        raise ValueError(f"{files.job} is damaged: {exc}") from None


def append_line(path: str, data: Dict[str, Any]) -> None:
    """One JSON object per line, written with a single write and flushed to disk at once,
    so that a reader (or a crash) sees whole lines only, except perhaps a torn last one."""
    line = json.dumps(data, separators=(",", ":")) + "\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def read_lines(path: str) -> Iterator[Dict[str, Any]]:
    """Records of a JSON-lines file; a torn or foreign line is skipped."""
    try:
        handle = open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            if len(line) > MAX_RECORD_BYTES or not line.endswith("\n"):
                continue
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict):
                yield item
