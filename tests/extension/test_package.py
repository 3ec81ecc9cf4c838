"""`python -m package_tools build` with the real tfx-cli: one .vsix, versions in step, the right files."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from package_tools import build
from package_tools.errors import BuildError
from tests.extension.support import (
    PHASES,
    REPO_ROOT,
    SHARED_TASK_FILES,
    build_vsix,
    built_vsix,
    decorator_steps,
    require_tool,
    task_dir,
    task_in_vsix,
    task_json,
)

VSIX_NS = {"m": "http://schemas.microsoft.com/developer/vsx-schema/2011"}
TASK_ZIPPED_LIMIT = 1_500_000
VSIX_LIMIT = 1_500_000  # bytes; with one copy of the collector the .vsix is about 0.8 MB (two copies: 1.62 MB)


@pytest.fixture(scope="module")
def vsix(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    (out / "stale-0.0.1.vsix").write_bytes(b"old")  # a previous build's file must not stay beside the new one
    return built_vsix(
        out,
        "--backend-url",
        "https://imagetrail.contoso.example/",
        "--audience",
        "api://contoso-it",
        "--publisher",
        "contoso",
    )


def read(vsix: Path, name: str) -> str:
    with zipfile.ZipFile(vsix) as archive:
        return archive.read(name).decode("utf-8")


def repo_copy(tmp_path: Path) -> Path:
    """What `build` reads from the repository, copied so that a test can break it."""
    copy = tmp_path / "repo"
    copy.mkdir()
    for name in ("vss-extension.json", "decorators", "tasks", "shim", "vendor", "package_tools", "src"):
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, copy / name)
    return copy


def test_exactly_one_vsix_named_after_publisher_id_and_version(vsix):
    assert sorted(p.name for p in vsix.parent.iterdir()) == [vsix.name]
    version = json.loads((REPO_ROOT / "vss-extension.json").read_text())["version"]
    assert vsix.name == f"contoso.imagetrail-collector-{version}.vsix"


def test_vsixmanifest_identity_and_vsomanifest_contributions(vsix):
    identity = ET.fromstring(read(vsix, "extension.vsixmanifest")).find("m:Metadata/m:Identity", VSIX_NS)
    manifest = json.loads((REPO_ROOT / "vss-extension.json").read_text())
    assert identity.get("Publisher") == "contoso" and identity.get("Version") == manifest["version"]
    assert identity.get("Id") == manifest["id"]
    contributions = json.loads(read(vsix, "extension.vsomanifest"))["contributions"]
    assert {(c["type"], tuple(c["targets"])) for c in contributions} == {
        (c["type"], tuple(c["targets"])) for c in manifest["contributions"]
    }


def test_the_vsix_carries_the_collector_once(vsix):
    """One task serves both decorator steps, so the collector, the shim and the wheels are packaged once."""
    names = build.packaged_files(vsix)
    assert [n for n in names if n.endswith("/collector/postjob.py")] == [f"{task_in_vsix()}/src/imagetrail/collector/postjob.py"]
    assert [n for n in names if n.endswith("collector-shim.js")] == [f"{task_in_vsix()}/collector-shim.js"]
    assert len([n for n in names if n.endswith(".whl")]) == len(list((REPO_ROOT / "vendor").glob("*.whl")))
    assert vsix.stat().st_size <= VSIX_LIMIT, vsix.stat().st_size


def test_the_task_folder_holds_what_the_collector_needs_and_nothing_of_the_server(vsix):
    """The agent downloads the task folder on its own: it must hold everything."""
    phase = "post-job"
    folder = task_in_vsix(phase)
    with zipfile.ZipFile(vsix) as archive:
        names = [n for n in archive.namelist() if n.startswith(folder + "/") and not n.endswith("/")]
        zipped = sum(info.compress_size for info in archive.infolist() if info.filename in names)
        packaged = {
            name: archive.read(f"{folder}/{name}")
            for name in ("index.js", "task-entry.js", "collector-shim.js")
        }
    relative = {n[len(folder) + 1 :] for n in names}
    for needed in (
        "task.json",
        "index.js",
        "task-entry.js",
        "collector-shim.js",
        "imagetrail-task.json",
        "icon.png",
        "src/imagetrail/__init__.py",
        "src/imagetrail/__main__.py",
        "src/imagetrail/cli.py",
        "src/imagetrail/report.py",
        "src/imagetrail/reference.py",
        "src/imagetrail/schemas/report-v1.schema.json",
        "src/imagetrail/collector/cli.py",
    ):
        assert needed in relative, needed
    wheels = sorted(n for n in relative if n.startswith("vendor/"))
    assert wheels == sorted("vendor/" + p.name for p in (REPO_ROOT / "vendor").glob("*.whl"))
    assert not [
        n
        for n in relative
        if n.startswith(
            ("src/imagetrail/server", "src/imagetrail/web", "src/imagetrail/client", "src/imagetrail/cloud")
        )
    ]
    assert not [n for n in relative if "__pycache__" in n or n.endswith(".pyc")]
    assert zipped < TASK_ZIPPED_LIMIT, zipped
    # One source each: the task's own one-line index.js, the shared entry, the shared shim.
    assert packaged["index.js"] == (task_dir(phase) / "index.js").read_bytes()
    assert packaged["task-entry.js"] == (SHARED_TASK_FILES / "task-entry.js").read_bytes()
    assert packaged["collector-shim.js"] == (REPO_ROOT / "shim" / "collector-shim.js").read_bytes()


def test_task_and_extension_versions_in_step_and_values_baked_into_decorators(vsix):
    manifest_version = json.loads((REPO_ROOT / "vss-extension.json").read_text())["version"]
    for phase in PHASES:
        task = json.loads(read(vsix, f"{task_in_vsix(phase)}/task.json"))
        assert "{Major}.{Minor}.{Patch}".format(**task["version"]) == manifest_version
        assert task["id"] == task_json(phase)["id"]
        [step] = decorator_steps(read(vsix, f"decorators/{phase}.yml"))
        assert step["task"] == f"{task['id']}@{task['version']['Major']}"
        assert step["inputs"] == {"imagetrailPhase": phase, "deadlineSeconds": step["inputs"]["deadlineSeconds"]}
        # Baked into the task folder, where the task entry reads it; pipeline variables cannot change it.
        assert json.loads(read(vsix, f"{task_in_vsix(phase)}/imagetrail-task.json")) == {
            "backendUrl": "https://imagetrail.contoso.example/",
            "audience": "api://contoso-it",
            "entraAuthorityHost": "",
        }


def test_version_option_sets_extension_task_and_decorator_major(tmp_path):
    vsix = built_vsix(tmp_path, "--version", "2.3.4")
    identity = ET.fromstring(read(vsix, "extension.vsixmanifest")).find("m:Metadata/m:Identity", VSIX_NS)
    assert identity.get("Version") == "2.3.4"
    for phase in PHASES:
        task = json.loads(read(vsix, f"{task_in_vsix(phase)}/task.json"))
        assert task["version"] == {"Major": 2, "Minor": 3, "Patch": 4}
        [step] = decorator_steps(read(vsix, f"decorators/{phase}.yml"))
        assert step["task"] == f"{task['id']}@2"
        # nothing baked: the collector keeps the report (a pipeline variable cannot name a backend)
        assert json.loads(read(vsix, f"{task_in_vsix(phase)}/imagetrail-task.json"))["backendUrl"] == ""


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--backend-url", "ftp://imagetrail.example"],
            "--backend-url 'ftp://imagetrail.example' must be an http(s) URL",
        ),
        (["--backend-url", "https://x.example/'; rm"], "--backend-url must not contain spaces, quotes"),
        (["--version", "1.2"], "--version '1.2' must be X.Y.Z"),
        (["--publisher", "contoso corp"], "--publisher 'contoso corp' must be a Marketplace publisher id"),
        (["--audience", "api://a b"], "--audience must be 1-512 characters without spaces"),
        (
            ["--entra-authority-host", "http://login.example"],
            "--entra-authority-host 'http://login.example' must be an https URL",
        ),
    ],
)
def test_bad_options_name_the_option(tmp_path, args, message):
    result = build_vsix(tmp_path, *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert not list(tmp_path.glob("*.vsix"))


def test_an_invalid_task_json_fails_the_build(tmp_path):
    """tfx-cli only warns about an invalid task.json; the build treats that as an error."""
    require_tool("tfx")
    copy = repo_copy(tmp_path)
    task_file = copy / "tasks" / "ImageTrailCollector" / "task.json"
    task = json.loads(task_file.read_text())
    task["friendlyName"] = "ImageTrail collector with a name far beyond forty characters"
    task_file.write_text(json.dumps(task))
    with pytest.raises(BuildError, match="tfx-cli rejected task.json"):
        build.build(build.BuildOptions(repo_root=copy, output_dir=tmp_path / "dist"))


def test_two_tasks_with_one_guid_fail_the_build(tmp_path):
    """A second task folder copied from the first (same GUID) must not slip through."""
    copy = repo_copy(tmp_path)
    shutil.copytree(copy / "tasks" / "ImageTrailCollector", copy / "tasks" / "ImageTrailCopy")
    copy_file = copy / "tasks" / "ImageTrailCopy" / "task.json"
    duplicate = json.loads(copy_file.read_text())
    duplicate["id"] = task_json()["id"].upper()
    duplicate["name"] = "ImageTrailCopy"
    copy_file.write_text(json.dumps(duplicate))
    manifest_file = copy / "vss-extension.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["contributions"].append({"id": "copy", "type": "ms.vss-distributed-task.task",
                                      "targets": ["ms.vss-distributed-task.tasks"],
                                      "properties": {"name": "tasks/ImageTrailCopy"}})
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(BuildError, match="share a task id"):
        build.build(build.BuildOptions(repo_root=copy, output_dir=tmp_path / "dist"))
    assert not list((tmp_path / "dist").glob("*.vsix"))
