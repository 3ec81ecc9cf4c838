"""Collector cost per job: import time and post-job wall time, against floors measured in the same run.

Floors: ``python3 -c pass``, ``node -e 0`` (the Node shim's own start) and one
``docker events --since .. --until ..`` CLI call. Measured: the Python side of the
nothing-pushed post-job step (the hot path: after every job of an organisation), its
import time (``-X importtime``), and post-job for 20 pushed references (docker-py loaded
to resolve digests). Target (A_collector brief): nothing-pushed post-job (shim + Python)
within 1.5x of ``node -e 0`` + ``python3 -c pass``.

Run: ``python3 benchmarks/bench_collector.py`` (needs the Docker engine and the registry
at 127.0.0.1:5000). Writes benchmarks/results/bench_collector.md.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = str(ROOT / "src")
REGISTRY = os.environ.get("IMAGETRAIL_TEST_REGISTRY", "127.0.0.1:5000")
RUNS = 9


def wall(cmd, env=None, runs=RUNS, before=None) -> float:
    times = []
    for _ in range(runs):
        if before:
            before()
        started = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def import_ms(module: str, env) -> float:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], env=env,
                          capture_output=True, text=True)
    total = 0
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[2].rstrip() and not parts[2].startswith("  ") and parts[1].strip().isdigit():
            total += int(parts[1])  # cumulative time of top-level imports
    return total / 1000.0


def job_env(temp: str, **extra) -> dict:
    env = dict(os.environ, PYTHONPATH=SRC, TF_BUILD="True", AGENT_TEMPDIRECTORY=temp, BUILD_BUILDID="1",
               SYSTEM_JOBID=str(uuid.uuid4()), SYSTEM_COLLECTIONURI="https://dev.azure.com/bench/",
               IMAGETRAIL_DRY_RUN="true")
    env.update(extra)
    return env


def main() -> int:
    temp = tempfile.mkdtemp(prefix="imagetrail-bench-")
    rows = []
    try:
        py_floor = wall([sys.executable, "-c", "pass"])
        node_floor = wall(["node", "-e", "0"]) if shutil.which("node") else float("nan")
        since = f"{time.time() - 5:.3f}"
        docker_floor = wall(["docker", "events", "--since", since, "--until", f"{time.time():.3f}"])

        env = job_env(temp)
        sys.path.insert(0, SRC)
        from imagetrail.collector.context.azure_devops import azure_devops_context
        from imagetrail.collector.state import JobFiles, JobRecord, write_json_atomically

        files = JobFiles.for_job(env, azure_devops_context(env))
        files.ensure_directory()

        def job_starts_now() -> None:
            # The daemon is shared with other work: a job window of a few ms holds no foreign push.
            write_json_atomically(files.job, JobRecord(start_ns=time.time_ns()).to_json())

        nothing = wall([sys.executable, "-m", "imagetrail", "collect", "post-job"], env=env, before=job_starts_now)
        imports = import_ms("imagetrail.collector.cli, imagetrail.collector.postjob", env)
        docker_py = import_ms("docker", env)

        # 20 pushed references, no watcher (ring buffer + docker-py resolution).
        base = f"{REGISTRY}/bench-{uuid.uuid4().hex[:8]}"
        start = time.strftime("%Y-%m-%d %H:%M:%S+00:00", time.gmtime(time.time() - 1))
        image = subprocess.run(["docker", "images", "-q"], capture_output=True, text=True).stdout.split()[0]
        for index in range(20):
            ref = f"{base}/app:{index}"
            subprocess.run(["docker", "tag", image, ref], check=True)
            subprocess.run(["docker", "push", ref], check=True, stdout=subprocess.DEVNULL)
        env20 = job_env(temp, SYSTEM_PIPELINESTARTTIME=start, SYSTEM_JOBID=str(uuid.uuid4()))
        twenty = wall([sys.executable, "-m", "imagetrail", "collect", "post-job"], env=env20, runs=5)
        for index in range(20):
            subprocess.run(["docker", "rmi", f"{base}/app:{index}"], stdout=subprocess.DEVNULL, check=False)

        floor = py_floor + node_floor
        rows = [
            ("python3 -c pass (floor)", py_floor * 1000, py_floor / py_floor),
            ("node -e 0 (floor)", node_floor * 1000, node_floor / py_floor),
            ("docker events --since/--until CLI call", docker_floor * 1000, docker_floor / py_floor),
            ("import imagetrail.collector (cli+postjob), -X importtime", imports, imports / 1000 / py_floor),
            ("import docker (docker-py), -X importtime", docker_py, docker_py / 1000 / py_floor),
            ("post-job, nothing pushed (Python side)", nothing * 1000, nothing / py_floor),
            ("post-job, 20 pushed references (ring buffer + docker-py)", twenty * 1000, twenty / py_floor),
        ]
        target = (node_floor + nothing) / floor
    finally:
        shutil.rmtree(temp, ignore_errors=True)

    lines = ["| measurement | ms (median) | x python3 -c pass |", "|---|---:|---:|"]
    lines += [f"| {name} | {ms:.1f} | {ratio:.2f} |" for name, ms, ratio in rows]
    lines += ["", f"Load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
                  "(other work shares the machine; ratios are more stable than absolute times).",
              "", f"Nothing-pushed step estimate (node start + Python post-job) / (node -e 0 + python3 -c pass): "
                  f"**{target:.2f}x** (target <= 1.5x). The shim's own work beyond `node -e 0` is not included."]
    text = "\n".join(lines)
    print(text)
    out = ROOT / "benchmarks" / "results" / "bench_collector.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# bench_collector\n\nMachine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
                   f"{RUNS} runs each (5 for 20 pushes).\n\n{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
