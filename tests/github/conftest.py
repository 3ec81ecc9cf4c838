"""After each test, end the job the way the runner does: RUNNER_TEMP goes away, and with it any
watcher the pre step left (it also exits by itself once its directory is gone)."""

from __future__ import annotations

import json
import os
import shutil
import signal

import pytest


def _stop_watchers(runner_temp) -> None:
    for record in (runner_temp / "imagetrail").glob("job-*.json"):
        try:
            pid = json.loads(record.read_text(encoding="utf-8")).get("watcherPid")
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                ours = str(runner_temp).encode() in handle.read()
        except (OSError, ValueError, TypeError):
            continue
        if ours:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture(autouse=True)
def end_of_job(tmp_path):
    yield
    runner_temp = tmp_path / "runner_temp"
    if runner_temp.is_dir():
        _stop_watchers(runner_temp)
        shutil.rmtree(runner_temp, ignore_errors=True)
