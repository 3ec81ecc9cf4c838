"""The pre-job step: note when the job started, start the watcher that records its pushes,
and register the job on its Docker engine (see ``shared_engine``)."""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any, Dict, Mapping, Optional

from imagetrail.collector import shared_engine, watcher
from imagetrail.collector.console import Console
from imagetrail.collector.context import pipeline_context
from imagetrail.collector.deadline import Deadline
from imagetrail.collector.docker_endpoint import EndpointError, resolve_endpoint
from imagetrail.collector.settings import SECRET_VARIABLES
from imagetrail.collector.state import JobFiles, JobRecord, job_key, write_json_atomically


def _watcher_env(env: Mapping[str, str]) -> Dict[str, str]:
    """The watcher needs the Docker settings, not the job's secrets nor any PYTHON* variable
    (it starts isolated and is given its path explicitly, see ``watcher.command``)."""
    return {k: v for k, v in env.items()
            if k not in SECRET_VARIABLES and not k.startswith(("IMAGETRAIL_", "PYTHON"))}


def start_watcher(files: JobFiles, since_ns: int, env: Mapping[str, str], registration: Optional[str]) -> int:
    kwargs: Dict[str, Any] = {}
    if os.name == "nt":
        kwargs["creationflags"] = subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP
    else:
        kwargs["start_new_session"] = True  # survives the step's process group
    with open(files.watcher_log, "ab") as log:
        process = subprocess.Popen(
            watcher.command(files.pushes, since_ns, registration),
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            close_fds=True, env=_watcher_env(env), cwd=files.directory, **kwargs,
        )
    process.returncode = 0  # detached on purpose: do not warn that it is still running at exit
    return process.pid


def pre_job(env: Mapping[str, str], console: Console, deadline: Deadline) -> None:
    context = pipeline_context(env)
    files = JobFiles.for_job(env, context)
    files.ensure_directory()
    start_ns = time.time_ns()
    record = JobRecord(start_ns=start_ns)
    try:
        endpoint = resolve_endpoint(env)
        record.docker_host = endpoint.host
    except EndpointError as exc:
        endpoint, record.watcher_problem = None, str(exc)
    if endpoint is not None and endpoint.unix_socket and not os.path.exists(endpoint.unix_socket):
        record.watcher_problem = f"no Docker daemon socket at {endpoint.unix_socket} when the job started"
    for stale in (files.pushes, files.watcher_log):
        try:
            os.remove(stale)
        except FileNotFoundError:
            pass
    registration: Optional[str] = None
    if endpoint is not None and record.watcher_problem is None:
        directory = shared_engine.engine_directory(env, shared_engine.engine_key(endpoint, deadline))
        registration = shared_engine.registration_path(directory, job_key(context))
        try:
            record.watcher_pid = start_watcher(files, start_ns, env, registration)
        except OSError as exc:
            record.watcher_problem = f"cannot start the watcher: {exc}"
    if record.watcher_pid and registration:
        try:
            record.engine_registration = shared_engine.register(
                registration, shared_engine.job_identity(context, console.mask), start_ns, record.watcher_pid,
                files.pushes)
        except OSError:
            pass  # a host where the temp dir is not shared or writable: only the shared-engine check is lost
    write_json_atomically(files.job, record.to_json())
    if record.watcher_pid:
        console.info(f"recording image pushes of this job (watcher pid {record.watcher_pid})")
    elif endpoint is None or endpoint.source != "default":
        console.warning(f"not watching Docker pushes: {record.watcher_problem}")
    else:
        console.info(f"not watching Docker pushes: {record.watcher_problem}")
