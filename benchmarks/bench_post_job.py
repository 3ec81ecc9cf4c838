"""Cost of the injected post-job step, side by side in one run.

Rows: the floor (`node -e 0` then `python3 -c pass`, what any Node task running Python pays), one
`docker events --since --until` CLI call, and the whole post-job step (`node
tasks/ImageTrailCollector/index.js` from the unzipped .vsix, shim + collector, after the job's untimed
pre-job step, the same task with its phase input pre-job) when the job pushed nothing and when it pushed 20
references to the local registry (127.0.0.1:5000) and reported them to a local backend stub (baked into the
build, as an organisation does). PATH holds the real python3 and docker; a second nothing-pushed row adds
podman, whose event log the collector then reads. The pre-job step of the nothing-pushed jobs (it starts the
watcher) is its own row. Targets:
nothing-pushed within 1.5x the floor; each task folder under 1.5 MB zipped. Needs tfx-cli, Docker and
the registry (scripts/start-services.sh). Writes benchmarks/results/bench_post_job.md.

    python3 benchmarks/bench_post_job.py [--runs 10] [--push-runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Dict, List

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "benchmarks" / "results" / "bench_post_job.md"
REGISTRY = os.environ.get("IMAGETRAIL_TEST_REGISTRY", "127.0.0.1:5000")
# The task folder each decorator runs (one task for both phases, self-contained in the .vsix).
TASKS = {"pre-job": "tasks/ImageTrailCollector", "post-job": "tasks/ImageTrailCollector"}
TASK_ZIPPED_TARGET = 1_500_000


class Sink(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


def timed(action: Callable[[], None], runs: int) -> List[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return samples


def run(command: List[str], env: Dict[str, str] = None, cwd: str = None) -> str:
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed: {result.stderr or result.stdout}")
    return result.stdout


def tool_path(base: Path, podman: bool) -> str:
    """A PATH folder with the real python3 (not a launcher script such as pyenv's shim, which would be
    measured too), docker and, when asked, podman (whose event log the collector then reads)."""
    folder = base / ("bin-with-podman" if podman else "bin-without-podman")
    folder.mkdir(parents=True, exist_ok=True)
    python3 = subprocess.run(["python3", "-c", "import sys; print(sys.executable)"], capture_output=True,
                             text=True, check=True).stdout.strip()
    tools = {"python3": os.path.realpath(python3), "docker": shutil.which("docker")}
    if podman:
        tools["podman"] = shutil.which("podman")
    for tool, found in tools.items():
        if found and not (folder / tool).exists():
            (folder / tool).symlink_to(found)
    return str(folder)


def job_env(base: Path) -> Dict[str, str]:
    temp = base / "_temp"
    temp.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "DOCKER_HOST")}
    env.update(
        {
            "TF_BUILD": "True",
            "AGENT_TEMPDIRECTORY": str(temp),
            "SYSTEM_COLLECTIONURI": "https://dev.azure.com/bench/",
            "SYSTEM_TEAMPROJECT": "Bench",
            "SYSTEM_DEFINITIONID": "1",
            "BUILD_BUILDID": str(int(base.name[:6], 16)),
            "SYSTEM_JOBID": base.name,
            "SYSTEM_JOBATTEMPT": "1",
            "BUILD_SOURCEVERSION": "0" * 40,
            "IMAGETRAIL_API_KEY": "bench-api-key-not-secret",
            "INPUT_DEADLINESECONDS": "50",
        }
    )
    return env


def stop_watcher(env: Dict[str, str]) -> None:
    for record in (Path(env["AGENT_TEMPDIRECTORY"]) / "imagetrail").glob("job-*[0-9a-f].json"):
        pid = json.loads(record.read_text()).get("watcherPid")
        if pid:
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--push-runs", type=int, default=3)
    args = parser.parse_args()
    for tool in ("tfx", "node", "docker"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed; run scripts/start-services.sh")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    backend = f"http://127.0.0.1:{server.server_address[1]}"
    work = Path(tempfile.mkdtemp(prefix="bench-post-job-"))
    try:
        sys.path.insert(0, str(REPO_ROOT))
        from package_tools import build

        # The backend URL is baked into the task folders, as an organisation's build does.
        vsix = build.build(build.BuildOptions(backend_url=backend, output_dir=work / "dist"))
        vsix_size = vsix.stat().st_size
        with zipfile.ZipFile(vsix) as archive:
            archive.extractall(work / "vsix")
            sizes = {
                folder: (
                    sum(i.compress_size for i in archive.infolist() if i.filename.startswith(folder + "/")),
                    sum(i.file_size for i in archive.infolist() if i.filename.startswith(folder + "/")),
                )
                for folder in TASKS.values()
            }

        def entry(phase: str) -> List[str]:
            task_dir = work / "vsix" / TASKS[phase]
            task = json.loads((task_dir / "task.json").read_text())
            return [shutil.which("node"), str(task_dir / task["execution"]["Node20_1"]["target"])]

        pre_entry, post_entry = entry("pre-job"), entry("post-job")

        def floor() -> None:
            run(["node", "-e", "0"])
            run([str(Path(tool_path(work, False)) / "python3"), "-c", "pass"])

        def events_call() -> None:
            now = int(time.time())
            run(
                ["docker", "events", "--since", str(now - 600), "--until", str(now), "--format", "{{json .}}"]
            )

        pre_job: List[float] = []  # the pre-job step of each nothing-pushed job (it starts the watcher)

        def job(pushes: int, podman: bool = False) -> float:
            base = work / "jobs" / uuid.uuid4().hex
            env = {**job_env(base), "PATH": tool_path(work, podman)}
            started = time.perf_counter()
            run(pre_entry, env={**env, "INPUT_DEADLINESECONDS": "20", "INPUT_IMAGETRAILPHASE": "pre-job"}, cwd=str(base))
            if not pushes and not podman:
                pre_job.append(time.perf_counter() - started)
            if pushes:
                image = f"{REGISTRY}/bench-{base.name[:8]}/app"
                context = base / "ctx"
                context.mkdir()
                (context / "Dockerfile").write_text(f"FROM scratch\nLABEL bench={base.name}\n")
                run(["docker", "build", "-q", "-t", f"{image}:0", str(context)])
                for index in range(pushes):
                    if index:
                        run(["docker", "tag", f"{image}:0", f"{image}:{index}"])
                    run(["docker", "push", "-q", f"{image}:{index}"])
            started = time.perf_counter()
            output = run(post_entry, env={**env, "INPUT_IMAGETRAILPHASE": "post-job"}, cwd=str(base))
            elapsed = time.perf_counter() - started
            stop_watcher(env)
            if "##vso[task.logissue" in output or (pushes and "reported" not in output):
                raise SystemExit(f"unexpected post-job output:\n{output}")
            return elapsed

        run(["python3", "-c", "pass"])  # warm the page cache before the first timed row
        rows = {
            "floor: node -e 0 + python3 -c pass": timed(floor, args.runs),
            "docker events --since --until (one CLI call)": timed(events_call, args.runs),
            "post-job step, nothing pushed": [job(0) for _ in range(args.runs)],
            "post-job step, nothing pushed, podman on PATH (its event log read)": [
                job(0, podman=True) for _ in range(args.runs)
            ],
            "post-job step, 20 references pushed and reported": [job(20) for _ in range(args.push_runs)],
        }
        rows["pre-job step (starts the watcher), nothing pushed"] = pre_job
    finally:
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    floor_median = statistics.median(rows["floor: node -e 0 + python3 -c pass"])
    lines = [
        "# bench_post_job",
        "",
        f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"node {subprocess.run(['node', '--version'], capture_output=True, text=True).stdout.strip()}, "
        f"Docker {run(['docker', 'version', '--format', '{{.Server.Version}}']).strip()}. "
        "Medians of wall-clock time; ratio against the floor measured in the same run.",
        "",
        "| what | runs | median ms | min ms | ratio to floor |",
        "|---|---|---|---|---|",
    ]
    for name, samples in rows.items():
        median = statistics.median(samples)
        lines.append(
            f"| {name} | {len(samples)} | {median * 1000:.0f} | {min(samples) * 1000:.0f} | "
            f"{median / floor_median:.2f}x |"
        )
    nothing = statistics.median(rows["post-job step, nothing pushed"]) / floor_median
    lines += [
        "",
        "| size | bytes | target |",
        "|---|---|---|",
        f"| .vsix (one task folder) | {vsix_size} | |",
    ]
    for folder, (zipped, unzipped) in sizes.items():
        met = "met" if zipped < TASK_ZIPPED_TARGET else "MISSED"
        lines += [
            f"| {folder}, zipped (in the .vsix) | {zipped} | < {TASK_ZIPPED_TARGET}: {met} |",
            f"| {folder}, unzipped | {unzipped} | |",
        ]
    lines += [
        "",
        f"Nothing-pushed post-job step: {nothing:.2f}x the floor (target 1.5x: "
        f"{'met' if nothing <= 1.5 else 'MISSED'}).",
    ]
    text = "\n".join(lines) + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
