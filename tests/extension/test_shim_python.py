"""The shim's interpreter discovery and masking, run with node on the real shim (shim/collector-shim.js):
which Python it starts, how many processes that costs, and the one warning when none fits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from tests.extension.support import REPO_ROOT, node, old_interpreter, setup_python_layout

SHIM = REPO_ROOT / "shim" / "collector-shim.js"


def run_shim(env: Dict[str, str], system_pythons: Optional[List[str]] = None,
             phase: str = "post-job") -> dict:
    """runCollector() in a node process; returns its result plus the lines it printed."""
    script = (
        "const shim = require(process.argv[1]);"
        "const lines = [];"
        "const options = JSON.parse(process.argv[2]);"
        "shim.runCollector({...options, log: (line) => lines.push(line)})"
        ".then((result) => process.stdout.write(JSON.stringify({...result, lines})));"
    )
    options = {"phase": phase, "root": str(REPO_ROOT), "env": env, "deadlineSeconds": 20}
    if system_pythons is not None:
        options["systemPythons"] = system_pythons
    done = subprocess.run([node(), "-e", script, str(SHIM), json.dumps(options)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def base_env(path: str) -> Dict[str, str]:
    return {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), "IMAGETRAIL_DRY_RUN": "true"}


def counting_python(file: Path, target: str, counter: Path) -> Path:
    """An interpreter that notes each start in `counter`, then runs `target`."""
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(f'#!/bin/sh\necho started >> "{counter}"\nexec "{target}" "$@"\n', encoding="utf-8")
    file.chmod(0o755)
    return file


def real_python() -> str:
    return os.path.realpath(sys.executable)


def test_setup_python_38_first_on_path_is_skipped_without_starting_it(tmp_path):
    counter = tmp_path / "starts"
    old_bin = setup_python_layout(tmp_path / "toolcache", counter)
    good_counter = tmp_path / "good-starts"
    good_bin = tmp_path / "good"
    counting_python(good_bin / "python3", real_python(), good_counter)
    result = run_shim(base_env(f"{old_bin}{os.pathsep}{good_bin}"), system_pythons=[])
    assert result["status"] == "ok", result
    assert result["python"] == "python3"
    assert not counter.exists()  # the 3.8 was recognised by its name, never started
    assert good_counter.read_text().count("started") == 1  # one process for the whole step
    assert result["warning"] is None


def test_an_old_interpreter_with_an_uninformative_name_costs_one_start(tmp_path):
    counter = tmp_path / "starts"
    old_bin = tmp_path / "old"
    old_bin.mkdir()
    stand_in = old_bin / "python3"
    stand_in.write_text(f'#!/bin/sh\necho started >> "{counter}"\n'
                        'echo "IMAGETRAIL_SHIM_OLD_PYTHON 3.8.18" >&2\nexit 86\n', encoding="utf-8")
    stand_in.chmod(0o755)
    versioned = tmp_path / "versioned"
    versioned.mkdir()
    (versioned / f"python3.{sys.version_info[1]}").symlink_to(real_python())
    result = run_shim(base_env(f"{old_bin}{os.pathsep}{versioned}"), system_pythons=[])
    assert result["status"] == "ok", result
    assert result["python"] == f"python3.{sys.version_info[1]}"  # python3.N on PATH
    assert counter.read_text().count("started") == 1


def test_system_location_after_path(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    system = tmp_path / "usr-bin"
    system.mkdir()
    (system / "python3").symlink_to(real_python())
    result = run_shim(base_env(str(empty)), system_pythons=[str(system / "python3")])
    assert result["status"] == "ok", result
    assert result["python"] == str(system / "python3")


def test_only_old_interpreters_is_one_warning_naming_them(tmp_path):
    counter = tmp_path / "starts"
    old_bin = setup_python_layout(tmp_path / "toolcache", counter)
    result = run_shim(base_env(str(old_bin)), system_pythons=[str(tmp_path / "nowhere" / "python3")])
    assert result["status"] == "old-python"
    [line] = result["lines"]
    assert line.startswith(
        "##vso[task.logissue type=warning]ImageTrail: Python >= 3.9 is needed on the agent, but python3 is "
        "Python 3.8 and no newer one was found (looked for python3, python, python3.N on PATH"
    ), line
    assert not counter.exists()


def test_no_python_at_all_is_one_warning(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_shim({**base_env(str(empty)), "GITHUB_ACTIONS": "true"}, system_pythons=[])
    assert result["status"] == "no-python"
    assert result["lines"] == [
        "::warning::ImageTrail: no Python found (looked for python3, python, python3.N on PATH); install "
        "Python >= 3.9 on the agent (or set the pipeline variable imagetrail.disable=true)"
    ]


def test_credentials_in_urls_are_masked_in_every_line(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    talker = bin_dir / "python3"
    talker.write_text('#!/bin/sh\necho "sending to https://deploy:hunter2secret@imagetrail.example/v1"\n'
                      'echo "proxy http://tok3n@proxy.example:3128 failed" >&2\nexit 3\n', encoding="utf-8")
    talker.chmod(0o755)
    result = run_shim(base_env(str(bin_dir)), system_pythons=[])
    printed = "\n".join(result["lines"])
    assert "hunter2secret" not in printed and "deploy" not in printed and "tok3n" not in printed
    assert "https://***@imagetrail.example/v1" in printed
    assert "http://***@proxy.example:3128 failed" in printed  # in the one warning line


@pytest.mark.parametrize("variable", ["PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONSTARTUP"])
def test_python_variables_do_not_reach_the_collector(tmp_path, variable):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dump, flags = tmp_path / "env.txt", tmp_path / "flags.txt"
    recorder = bin_dir / "python3"
    recorder.write_text(f'#!/bin/sh\nenv > "{dump}"\necho "$1 $2 $3 $4 $5" > "{flags}"\n', encoding="utf-8")
    recorder.chmod(0o755)
    result = run_shim({**base_env(str(bin_dir)), variable: str(tmp_path / "hostile")}, system_pythons=[])
    assert result["status"] == "ok"
    assert variable not in dump.read_text()
    # Isolated start: PYTHON* variables ignored, no user site, no site-packages .pth files.
    assert flags.read_text().split() == ["-E", "-s", "-S", "-u", "-c"]


@pytest.mark.parametrize("version", ["2.7", "3.8"])
def test_a_real_old_interpreter_behind_an_uninformative_name_is_recognised(tmp_path, version):
    """The bootstrap must parse under any Python, so that an old one answers with its version (exit 86)
    instead of a syntax error: run it under a real old interpreter reached through a plain `python3`."""
    interpreter = old_interpreter(version)
    if interpreter is None:
        pytest.skip(f"no Python {version} interpreter on this machine (pyenv or PATH)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "python3"
    wrapper.write_text(f'#!/bin/sh\nexec "{interpreter}" "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    result = run_shim(base_env(str(bin_dir)), system_pythons=[])
    assert result["status"] == "old-python", result
    [line] = result["lines"]
    assert f"but python3 is Python {version}." in line, line
