"""What a backend outage costs each job: the shipped post-job step in emulated agent jobs on ONE
agent host, each pushing one image, while the backend hangs (accepts, never answers) or answers 500.

For each outage kind, runs of N jobs in a row (default: 2, then 10) share one agent tools
directory (where the host's breaker lives, as on a self-hosted agent); a run starts with a fresh
one. A job's added time is its post-job step's wall-clock time minus the median of the same step
against a healthy backend, measured in the same run. Goals: <= 10 s for the first job of an
outage, <= 3 s for every later one. Needs tfx-cli, Docker and the registry (scripts/start-services.sh).
Writes benchmarks/results/bench_outage.md.

    python3 benchmarks/bench_outage.py [--jobs 2 10] [--baseline-runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_post_job import REGISTRY, REPO_ROOT, TASKS, Sink, job_env, run, stop_watcher  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results" / "bench_outage.md"
FIRST_GOAL, NEXT_GOAL = 10.0, 3.0


class Answers500(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _fail(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"detail":"internal error"}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _fail


def hanging_backend() -> Callable[[], None]:
    """A listener that accepts every connection and never answers; returns its stop function."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(256)
    held: List[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()

    def close() -> None:
        stop.set()
        server.close()
        for conn in held:
            conn.close()

    close.url = f"http://127.0.0.1:{server.getsockname()[1]}"  # type: ignore[attr-defined]
    return close


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[2, 10], help="jobs in a row, per run")
    parser.add_argument("--baseline-runs", type=int, default=5)
    args = parser.parse_args()
    for tool in ("tfx", "node", "docker"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed; run scripts/start-services.sh")

    work = Path(tempfile.mkdtemp(prefix="bench-outage-"))
    healthy = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    failing = ThreadingHTTPServer(("127.0.0.1", 0), Answers500)
    for server in (healthy, failing):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    hang = hanging_backend()
    image = f"{REGISTRY}/bench-outage-{uuid.uuid4().hex[:8]}/app"
    try:
        sys.path.insert(0, str(REPO_ROOT))
        from package_tools import build

        vsix = build.build(build.BuildOptions(output_dir=work / "dist"))
        import zipfile

        with zipfile.ZipFile(vsix) as archive:
            archive.extractall(work / "vsix")

        def entry(phase: str) -> List[str]:
            task_dir = work / "vsix" / TASKS[phase]
            task = json.loads((task_dir / "task.json").read_text())
            return [shutil.which("node"), str(task_dir / task["execution"]["Node20_1"]["target"])]

        pre_entry, post_entry = entry("pre-job"), entry("post-job")
        context = work / "ctx"
        context.mkdir()
        (context / "Dockerfile").write_text(f"FROM scratch\nLABEL bench={uuid.uuid4().hex}\n")
        run(["docker", "build", "-q", "-t", f"{image}:base", str(context)])

        def bake(backend: str) -> None:
            """The backend URL as ``package_tools build --backend-url`` bakes it into each task folder
            (a job's environment cannot choose it); one build serves every backend of the run."""
            settings = build.baked_settings(build.BuildOptions(backend_url=backend))
            for phase in ("pre-job", "post-job"):
                (work / "vsix" / TASKS[phase] / build.BAKED_SETTINGS).write_text(json.dumps(settings))

        def job(backend: str, tools: Path) -> float:
            """One agent job that pushes one image; returns its post-job step's seconds."""
            bake(backend)
            base = work / "jobs" / uuid.uuid4().hex
            env = {**job_env(base), "AGENT_TOOLSDIRECTORY": str(tools)}
            run(pre_entry, env={**env, "INPUT_DEADLINESECONDS": "20"}, cwd=str(base))
            tag = f"{image}:{base.name[:12]}"
            run(["docker", "tag", f"{image}:base", tag])
            run(["docker", "push", "-q", tag])
            started = time.perf_counter()
            output = run(post_entry, env=env, cwd=str(base))
            elapsed = time.perf_counter() - started
            stop_watcher(env)
            delivered = "reported 1 pushed image reference" in output
            if delivered != (backend == healthy_url):
                raise SystemExit(f"unexpected post-job output:\n{output}")
            return elapsed

        healthy_url = f"http://127.0.0.1:{healthy.server_address[1]}"
        tools = work / "tools-healthy"
        tools.mkdir()
        baseline = [job(healthy_url, tools) for _ in range(args.baseline_runs)]
        floor = statistics.median(baseline)
        outages: Dict[str, str] = {"hangs (accepts, never answers)": hang.url,  # type: ignore[attr-defined]
                                   "answers HTTP 500": f"http://127.0.0.1:{failing.server_address[1]}"}
        results: Dict[str, List[List[float]]] = {}
        for name, url in outages.items():
            results[name] = []
            for count in args.jobs:
                tools = work / f"tools-{uuid.uuid4().hex[:8]}"  # a fresh host: its first job meets the outage
                tools.mkdir()
                results[name].append([job(url, tools) - floor for _ in range(count)])
    finally:
        hang()
        for server in (healthy, failing):
            server.shutdown()
        subprocess.run(["docker", "image", "rm", "-f", f"{image}:base"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    load = os.getloadavg()
    lines = [
        "# bench_outage",
        "",
        f"Machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end, "
        f"Python {sys.version.split()[0]}. Post-job step of the shipped extension, one image pushed per job; "
        f"healthy-backend median {floor * 1000:.0f} ms over {len(baseline)} jobs. Added seconds per job, "
        f"in order; goals: first job <= {FIRST_GOAL:g} s, later jobs <= {NEXT_GOAL:g} s.",
        "",
        "| backend | jobs in a row | added s per job | first | worst later | goals |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        for added in runs:
            later = max(added[1:]) if len(added) > 1 else 0.0
            met = added[0] <= FIRST_GOAL and later <= NEXT_GOAL
            lines.append(f"| {name} | {len(added)} | {' '.join(f'{a:.1f}' for a in added)} | {added[0]:.1f} | "
                         f"{later:.1f} | {'met' if met else 'MISSED'} |")
    text = "\n".join(lines) + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
