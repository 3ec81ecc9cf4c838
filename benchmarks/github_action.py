"""What the GitHub Action adds to a job: wall time of its pre, main and post steps.

Each step is run with `node` the way the runner runs it (tests/github/runner.py), against the
real Docker engine, in dry-run (no backend, so the figures are the action's own cost). The floor,
measured in the same run, is what any Node action calling a Python program pays anyway:
`node -e 0` followed by `python3 -c "import imagetrail.report"`.

    python3 benchmarks/github_action.py [--repeat N]

Prints a table and writes benchmarks/results/github_action.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.github.runner import NODE, ActionRun, job_env  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "github_action.md"


def floor_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([NODE, "-e", "0"], check=True)
    subprocess.run([sys.executable, "-c", "import imagetrail.report"], check=True,
                   env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    return time.perf_counter() - started


def one_job(work_dir: Path) -> dict:
    env = job_env(work_dir, "octo-org/bench")
    run = ActionRun(job_env=env, inputs={"dry-run": "true", "report-file": str(work_dir / "r.json")},
                    work_dir=work_dir)
    return {phase: run.step(phase).seconds for phase in ("pre", "main", "post")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    floors, steps = [], {"pre": [], "main": [], "post": []}
    for _ in range(args.repeat):
        floors.append(floor_seconds())
        with tempfile.TemporaryDirectory() as tmp:
            for phase, seconds in one_job(Path(tmp)).items():
                steps[phase].append(seconds)
    floor = statistics.median(floors)
    rows = [("floor: node -e 0 + python3 import", floor, 1.0)]
    rows += [(f"{phase} step", statistics.median(values), statistics.median(values) / floor)
             for phase, values in steps.items()]
    total = sum(statistics.median(v) for v in steps.values())
    rows.append(("whole action (pre + main + post)", total, total / floor))
    lines = [f"| {name} | {seconds * 1000:.0f} ms | {ratio:.2f}x |" for name, seconds, ratio in rows]
    table = "\n".join(["| what | median wall time | ratio to floor |", "|---|---|---|", *lines])
    print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        "# GitHub Action step overhead\n\n"
        f"`python3 benchmarks/github_action.py --repeat {args.repeat}`: median over {args.repeat} jobs, real Docker "
        "engine, dry-run, no pushes of its own. The floor is measured in the same run, so the ratios hold on a "
        "busy machine even when the absolute times do not.\n\n" + table + "\n",
        encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
