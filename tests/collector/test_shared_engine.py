"""Jobs sharing one Docker engine (several agents on one host): the real engine and registry,
simulated jobs with their own agent temp dirs and job ids, sharing one host temp dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from imagetrail.collector import shared_engine
from tests.collector.support import (
    azure_env,
    collect,
    engine_registrations,
    import_image,
    job_record,
    kill_watcher,
    push,
    validate,
)

pytestmark = pytest.mark.e2e


def _job(tmp_path: Path, name: str, engines: Path, pipeline: str, run: str, job: str) -> dict:
    return azure_env(tmp_path / name, IMAGETRAIL_ENGINE_DIR=str(engines), BUILD_DEFINITIONNAME=pipeline,
                     BUILD_BUILDNUMBER=run, SYSTEM_JOBDISPLAYNAME=job)


def _pre_job(env: dict) -> None:
    run = collect("pre-job", env)
    assert run.returncode == 0 and run.warnings() == [], run.output
    assert job_record(env)["engineRegistration"], run.output


def _post_job(env: dict, tmp_path: Path, name: str):
    report_file = tmp_path / f"{name}-report.json"
    run = collect("post-job", env, "--dry-run", "--report-file", str(report_file))
    assert run.returncode == 0, run.output
    assert run.warnings() == [], run.output  # a shared engine is an info line, not a warning
    body = json.loads(report_file.read_text())
    validate(body)
    return run, body


def _shared(run, body) -> tuple:
    entries = [d for d in body["collector"]["discovery"] if d.startswith("shared-engine")]
    warnings = [w for w in body["warnings"] if w.startswith("shared Docker engine")]
    infos = [line for line in run.stdout.splitlines() if "Docker engine is shared" in line]
    return entries, warnings, infos


def test_overlapping_jobs_name_each_other(registry, tmp_path):
    engines = tmp_path / "engines"  # one agent host
    first = _job(tmp_path, "first", engines, "shop-ci", "20260101.1", "Build image")
    second = _job(tmp_path, "second", engines, "billing-ci", "20260101.2", "Publish")
    third = _job(tmp_path, "third", engines, "docs-ci", "20260101.3", "Lint")
    for env in (first, second, third):
        _pre_job(env)
    registrations = engine_registrations(engines)
    assert len(registrations) == 3
    assert len({path.parent for path in registrations}) == 1  # one directory for the engine
    identity = json.loads(registrations[0].read_text())["job"]
    assert set(identity) == set(shared_engine.IDENTITY_FIELDS)
    for path in registrations:  # identity only: no secret, no token
        assert first["SYSTEM_ACCESSTOKEN"] not in path.read_text()

    # The first job pushes while the other two run: all three see the push in the daemon's events.
    reference = f"{registry}/it-{uuid.uuid4().hex[:10]}/app:1"
    import_image(reference)
    digest = push(reference)

    run, body = _post_job(first, tmp_path, "first")
    assert [p["digest"] for p in body["pushes"] if p["reference"] == reference] == [digest]
    entries, warnings, infos = _shared(run, body)
    assert entries == ["shared-engine:2-other-jobs"]
    assert len(warnings) == 1 and len(infos) == 1
    assert "pipeline 'billing-ci' run 20260101.2 job 'Publish'" in warnings[0]
    assert "pipeline 'docs-ci' run 20260101.3 job 'Lint'" in warnings[0]
    assert "shop-ci" not in warnings[0]  # not itself

    run, body = _post_job(second, tmp_path, "second")
    entries, warnings, infos = _shared(run, body)
    assert entries == ["shared-engine:2-other-jobs"]  # the first job has ended, but its window held the push
    assert "pipeline 'shop-ci' run 20260101.1 job 'Build image'" in warnings[0]
    assert "pipeline 'docs-ci' run 20260101.3 job 'Lint'" in warnings[0]
    assert len(infos) == 1

    _, body = _post_job(third, tmp_path, "third")
    assert _shared(run, body)[0] == ["shared-engine:2-other-jobs"]
    # Nobody runs any more: every registration is gone.
    assert engine_registrations(engines) == []


def test_jobs_one_after_the_other_do_not_warn(registry, tmp_path):
    engines = tmp_path / "engines"  # one agent host
    base = f"{registry}/it-{uuid.uuid4().hex[:10]}"
    earlier = _job(tmp_path, "earlier", engines, "shop-ci", "1", "Build")
    later = _job(tmp_path, "later", engines, "shop-ci", "2", "Build")

    _pre_job(earlier)
    import_image(f"{base}/app:1")
    push(f"{base}/app:1")
    run, body = _post_job(earlier, tmp_path, "earlier")
    assert _shared(run, body) == ([], [], [])
    assert engine_registrations(engines) == []  # no job runs that could still need it

    _pre_job(later)
    import_image(f"{base}/app:2")
    push(f"{base}/app:2")
    run, body = _post_job(later, tmp_path, "later")
    assert [p["reference"] for p in body["pushes"] if p["reference"].startswith(base)] == [f"{base}/app:2"]
    assert _shared(run, body) == ([], [], [])


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True)
    return int(done.stdout)


def test_stale_registrations_are_ignored_and_removed(registry, tmp_path):
    engines = tmp_path / "engines"  # one agent host
    job = _job(tmp_path, "job", engines, "shop-ci", "7", "Build")
    crashed = _job(tmp_path, "crashed", engines, "old-ci", "1", "Cancelled")
    _pre_job(crashed)
    kill_watcher(crashed)  # a cancelled job whose post-job never ran
    _pre_job(job)
    directory = Path(job_record(job)["engineRegistration"]).parent
    now = time.time_ns()
    identity = {"pipeline": "ghost-ci", "run": "1", "job": "Ghost"}
    stale = {
        # closed two days ago
        "job-closed-long-ago.json": {"job": identity, "startNs": now - 50 * 3600 * 10**9,
                                     "endNs": now - 49 * 3600 * 10**9, "host": "elsewhere"},
        # open, on this host, but its watcher process is gone (a pid that has exited)
        "job-dead-watcher.json": {"job": identity, "startNs": now - 60 * 10**9, "endNs": None,
                                  "host": shared_engine._host_identity(), "watcherPid": _dead_pid(),
                                  "watcherMarker": f"/no/such/{uuid.uuid4().hex}.pushes.jsonl"},
        # open, from another host (or pid namespace), without a heartbeat for ten minutes
        "job-no-heartbeat.json": {"job": identity, "startNs": now - 60 * 10**9, "endNs": None,
                                  "host": "elsewhere"},
        "job-damaged.json": "{garbage",
    }
    for name, data in stale.items():
        path = directory / name
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        os.utime(path, (time.time() - 600, time.time() - 600))

    reference = f"{registry}/it-{uuid.uuid4().hex[:10]}/app:1"
    import_image(reference)
    push(reference)
    run, body = _post_job(job, tmp_path, "job")
    assert [p["reference"] for p in body["pushes"] if p["reference"] == reference] == [reference]
    assert _shared(run, body) == ([], [], [])
    assert engine_registrations(engines) == []
