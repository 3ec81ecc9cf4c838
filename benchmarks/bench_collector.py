"""Collector cost per job: import time and post-job wall time, against floors measured in the same run.

Floors: ``python3 -c pass``, ``node -e 0`` (the Node shim's own start) and one
``docker events --since .. --until ..`` CLI call against the engine (Defender's way of
collecting; the call is checked to return the pushes of its window). Measured: the import
cost of the collector beyond Python's own start (the wall-time difference to
``python3 -c pass``, and ``-X importtime`` of the modules ``-c pass`` does not import), the
Python side of the nothing-pushed post-job step (the hot path: after every job of an
organisation, with a shared-engine registration to close), and post-job for 20 pushed
references found in the ring buffer (docker-py loaded to resolve digests). Target
(A_collector brief): nothing-pushed post-job (shim + Python) within 1.5x of ``node -e 0`` +
``python3 -c pass``.

Run: ``python3 benchmarks/bench_collector.py`` (needs the Docker engine and the registry
at 127.0.0.1:5000). Writes benchmarks/results/bench_collector.md.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
SRC = str(ROOT / "src")
REGISTRY = os.environ.get("IMAGETRAIL_TEST_REGISTRY", "127.0.0.1:5000")
RUNS = 9
PUSHES = 20
COLLECTOR_MODULES = "imagetrail.collector.cli, imagetrail.collector.postjob"


def wall(cmd: List[str], env: Optional[Dict[str, str]] = None, runs: int = RUNS,
         before: Optional[Callable[[], None]] = None) -> float:
    """Median wall time; a command that fails is an error, not a fast sample."""
    times = []
    for _ in range(runs):
        if before:
            before()
        started = time.perf_counter()
        done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.decode(errors='replace')[:300]}")
    return statistics.median(times)


def top_level_imports(code: str, env: Dict[str, str]) -> Dict[str, int]:
    """Cumulative microseconds of each top-level import (``-X importtime``)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env, capture_output=True,
                          text=True, check=True)
    found: Dict[str, int] = {}
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit() and not parts[2].startswith("  "):
            found[parts[2].strip()] = int(parts[1])
    return found


def import_ms(modules: str, env: Dict[str, str], runs: int = 5) -> float:
    """What importing ``modules`` adds to Python's start: the top-level imports that
    ``-c pass`` does not make (site, encodings and the like are Python's own start)."""
    samples = []
    for _ in range(runs):
        startup = top_level_imports("pass", env)
        ours = top_level_imports(f"import {modules}", env)
        samples.append(sum(us for name, us in ours.items() if name not in startup) / 1000.0)
    return statistics.median(samples)


def job_env(temp: str, **extra: str) -> Dict[str, str]:
    env = dict(os.environ, PYTHONPATH=SRC, TF_BUILD="True", AGENT_TEMPDIRECTORY=temp, BUILD_BUILDID="1",
               SYSTEM_JOBID=str(uuid.uuid4()), SYSTEM_COLLECTIONURI="https://dev.azure.com/bench/",
               IMAGETRAIL_DRY_RUN="true", IMAGETRAIL_ENGINE_DIR=os.path.join(temp, "engines"))
    env.update(extra)
    return env


def docker_events_floor(since: float, until: float, expected: int) -> float:
    """One ``docker events`` call over the window of the benchmark's pushes; it must list them."""
    cmd = ["docker", "events", "--since", f"{since:.3f}", "--until", f"{until:.3f}",
           "--filter", "type=image", "--filter", "event=push", "--format", "{{json .}}"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    pushes = [line for line in done.stdout.splitlines() if '"Action":"push"' in line]
    if done.returncode != 0 or len(pushes) < expected:
        raise SystemExit(f"docker events did not list the {expected} pushes (exit {done.returncode}, "
                         f"{len(pushes)} found): {done.stderr[:300]}")
    return wall(cmd)


def main() -> int:
    temp = tempfile.mkdtemp(prefix="imagetrail-bench-")
    sys.path.insert(0, SRC)
    from imagetrail.collector import shared_engine
    from imagetrail.collector.context.azure_devops import azure_devops_context
    from imagetrail.collector.state import JobFiles, JobRecord, job_key, write_json_atomically

    base = f"{REGISTRY}/bench-{uuid.uuid4().hex[:8]}"
    try:
        py_floor = wall([sys.executable, "-c", "pass"])
        node_floor = wall(["node", "-e", "0"]) if shutil.which("node") else float("nan")
        env = job_env(temp)
        imports_wall = wall([sys.executable, "-c", f"import {COLLECTOR_MODULES}"], env=env) - py_floor
        imports = import_ms(COLLECTOR_MODULES, env)
        docker_py = import_ms("docker", env)

        context = azure_devops_context(env)
        files = JobFiles.for_job(env, context)
        files.ensure_directory()
        registration = shared_engine.registration_path(
            shared_engine.engine_directory(env, "bench-engine"), job_key(context))

        def job_starts_now() -> None:
            # A job window of a few ms holds no foreign push, even on a shared daemon.
            start = time.time_ns()
            shared_engine.register(registration, shared_engine.job_identity(context), start, None, None)
            record = JobRecord(start_ns=start, engine_registration=registration)
            write_json_atomically(files.job, record.to_json())

        post_job = [sys.executable, "-m", "imagetrail", "collect", "post-job"]
        nothing = wall(post_job, env=env, before=job_starts_now)

        # PUSHES pushed references, no watcher: the ring buffer, then docker-py resolves them.
        start = time.time() - 1
        image = subprocess.run(["docker", "images", "-q"], capture_output=True, text=True).stdout.split()[0]
        for index in range(PUSHES):
            ref = f"{base}/app:{index}"
            subprocess.run(["docker", "tag", image, ref], check=True)
            subprocess.run(["docker", "push", ref], check=True, stdout=subprocess.DEVNULL)
        docker_floor = docker_events_floor(start, time.time(), PUSHES)
        report_file = os.path.join(temp, "report.json")
        env_pushed = job_env(temp, SYSTEM_JOBID=str(uuid.uuid4()), IMAGETRAIL_REPORT_FILE=report_file,
                             SYSTEM_PIPELINESTARTTIME=time.strftime("%Y-%m-%d %H:%M:%S+00:00",
                                                                    time.gmtime(start)))
        pushed = wall(post_job, env=env_pushed, runs=5)
        found = [p for p in json.loads(Path(report_file).read_text())["pushes"]
                 if p["reference"].startswith(base) and p["digest"]]
        if len(found) != PUSHES:
            raise SystemExit(f"post-job resolved {len(found)} of the {PUSHES} pushes")
    finally:
        for index in range(PUSHES):
            subprocess.run(["docker", "rmi", f"{base}/app:{index}"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(temp, ignore_errors=True)

    rows = [
        ("python3 -c pass (floor)", py_floor * 1000, 1.0),
        ("node -e 0 (floor)", node_floor * 1000, node_floor / py_floor),
        (f"docker events --since/--until CLI call (lists the {PUSHES} pushes)", docker_floor * 1000,
         docker_floor / py_floor),
        ("import collector (cli+postjob): wall time beyond python3 -c pass", imports_wall * 1000,
         imports_wall / py_floor),
        ("import collector (cli+postjob): -X importtime, beyond -c pass", imports, imports / 1000 / py_floor),
        ("import docker (docker-py): -X importtime, beyond -c pass", docker_py, docker_py / 1000 / py_floor),
        ("post-job, nothing pushed (Python side)", nothing * 1000, nothing / py_floor),
        (f"post-job, {PUSHES} pushed references (ring buffer + docker-py)", pushed * 1000, pushed / py_floor),
    ]
    target = (node_floor + nothing) / (node_floor + py_floor)
    lines = ["| measurement | ms (median) | x python3 -c pass |", "|---|---:|---:|"]
    lines += [f"| {name} | {ms:.1f} | {ratio:.2f} |" for name, ms, ratio in rows]
    lines += ["", f"Load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
                  "(other work shares the machine; ratios are more stable than absolute times).",
              "", "Nothing-pushed step estimate (node start + Python post-job) / "
                  f"(node -e 0 + python3 -c pass): **{target:.2f}x** (target <= 1.5x). The shim's own work "
                  "beyond `node -e 0` is not included; benchmarks/bench_post_job.py measures the whole "
                  "packaged step."]
    text = "\n".join(lines)
    print(text)
    out = ROOT / "benchmarks" / "results" / "bench_collector.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# bench_collector\n\nMachine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
                   f"{RUNS} runs each (5 for {PUSHES} pushes, 5 x 2 processes for -X importtime)."
                   f"\n\n{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
