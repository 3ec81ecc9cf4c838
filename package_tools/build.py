"""Package the Azure DevOps extension (.vsix) with the real tfx-cli.

The repository is copied into a staging folder, where the organisation's backend URL, token audience
and (optionally) Entra authority host are baked into each task folder (imagetrail-task.json, read by
tasks/shared/task-entry.js; no pipeline variable can change them), the extension and task versions are set
in step, and each task folder listed in the manifest (one: ImageTrailCollector serves both decorator steps,
its phase an input, so the collector is packaged once) receives the entry script and icon (tasks/shared/),
the shim, the collector sources and the vendored wheels, so that it runs on its own (the agent downloads
each task on its own; no task can use another's files). Then `tfx extension create` writes exactly one
.vsix into dist/.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple
from urllib.parse import urlsplit

from package_tools import vendor
from package_tools.errors import BuildError

REPO_ROOT = vendor.REPO_ROOT
MANIFEST = "vss-extension.json"
TASK_CONTRIBUTION = "ms.vss-distributed-task.task"
DECORATOR_CONTRIBUTION = "ms.azure-pipelines.pipeline-decorator"
# Copied into every task folder: the one entry script (each folder's index.js fixes the phase) and the icon.
SHARED_TASK_FILES = Path("tasks") / "shared"
SHIM = Path("shim") / "collector-shim.js"
# Read by tasks/shared/task-entry.js from its own folder.
BAKED_SETTINGS = "imagetrail-task.json"
# What `imagetrail collect` imports; the backend, web and client packages stay out of the task.
COLLECTOR_SOURCES = (
    "__init__.py",
    "__main__.py",
    "cli.py",
    "report.py",
    "reference.py",
    "schemas",
    "collector",
)
# tfx-cli only warns about an invalid task.json ("will be treated as an error" later): we fail now.
TFX_TASK_WARNING = "make sure the task.json file is correct"

_VERSION = re.compile(r"^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})$")
_PUBLISHER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,127}$")
_AUDIENCE = re.compile(r"^[^\s'\"\\]{1,512}$")


@dataclass(frozen=True)
class BuildOptions:
    backend_url: str = ""
    audience: str = ""
    entra_authority_host: str = ""
    publisher: Optional[str] = None
    version: Optional[str] = None
    output_dir: Optional[Path] = None
    repo_root: Path = REPO_ROOT

    @classmethod
    def from_args(cls, **kwargs) -> "BuildOptions":
        options = cls(**{key: value for key, value in kwargs.items() if value is not None})
        options.validate()
        return options

    def validate(self) -> None:
        if self.backend_url:
            parts = urlsplit(self.backend_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise BuildError(f"--backend-url {self.backend_url!r} must be an http(s) URL with a host")
            if any(ch in self.backend_url for ch in " '\"\\"):
                raise BuildError("--backend-url must not contain spaces, quotes or backslashes")
        if self.entra_authority_host:
            parts = urlsplit(self.entra_authority_host)
            if parts.scheme != "https" or not parts.hostname or parts.path.strip("/") or parts.query:
                raise BuildError(f"--entra-authority-host {self.entra_authority_host!r} must be an https URL "
                                 "with a host and nothing else, e.g. https://login.microsoftonline.us")
        if self.audience and not _AUDIENCE.match(self.audience):
            raise BuildError("--audience must be 1-512 characters without spaces, quotes or backslashes")
        if self.publisher is not None and not _PUBLISHER.match(self.publisher):
            raise BuildError(
                f"--publisher {self.publisher!r} must be a Marketplace publisher id (letters, digits, '-')"
            )
        if self.version is not None and not _VERSION.match(self.version):
            raise BuildError(f"--version {self.version!r} must be X.Y.Z (three non-negative integers)")


def split_version(version: str) -> Tuple[int, int, int]:
    match = _VERSION.match(version)
    if not match:
        raise BuildError(f"version {version!r} must be X.Y.Z")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def load_json(path: Path, name: str = "") -> Dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise BuildError(f"cannot read {name or path.name}: {err}") from err


def task_folders(manifest: Dict) -> List[Path]:
    """The task folders the manifest contributes (properties.name of each task contribution)."""
    folders = [
        Path(contribution["properties"]["name"])
        for contribution in manifest.get("contributions", [])
        if contribution.get("type") == TASK_CONTRIBUTION
    ]
    if not folders:
        raise BuildError(f"{MANIFEST} contributes no task ({TASK_CONTRIBUTION})")
    return folders


def decorator_templates(manifest: Dict) -> List[Path]:
    """The decorator templates the manifest contributes, each once."""
    templates = {
        contribution["properties"]["template"]
        for contribution in manifest.get("contributions", [])
        if contribution.get("type") == DECORATOR_CONTRIBUTION
    }
    return [Path(template) for template in sorted(templates)]


def load_tasks(root: Path, folders: Iterable[Path]) -> Dict[Path, Dict]:
    """Each folder's task.json; the decorators tell the tasks apart by id, so ids and names must differ."""
    tasks = {
        folder: load_json(root / folder / "task.json", (folder / "task.json").as_posix())
        for folder in folders
    }
    for key in ("id", "name"):
        values = [str(task.get(key, "")).lower() for task in tasks.values()]
        if len(set(values)) != len(values):
            raise BuildError(
                f"the task.json files of {', '.join(f.as_posix() for f in tasks)} share a task {key}"
            )
    return tasks


def _yaml_single_quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def render_decorator(text: str, task_ids: Iterable[str], major: int) -> str:
    """Point the decorator at the packaged task major."""
    ids = "|".join(re.escape(task_id) for task_id in task_ids)
    text, count = re.subn(rf"(task: (?:{ids}))@\d+", rf"\g<1>@{major}", text, flags=re.IGNORECASE)
    if count == 0:
        raise BuildError("decorator template does not reference a packaged task by GUID")
    return text


def baked_settings(options: BuildOptions) -> Dict[str, str]:
    """What each task folder's imagetrail-task.json holds: where the job's credentials may go."""
    return {
        "backendUrl": options.backend_url,
        "audience": options.audience,
        "entraAuthorityHost": options.entra_authority_host.rstrip("/"),
    }


def _copy_sources(src_package: Path, destination: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")
    for name in COLLECTOR_SOURCES:
        source = src_package / name
        if not source.exists():
            raise BuildError(f"src/imagetrail/{name} is missing; the collector cannot run without it")
        target = destination / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            shutil.copy2(source, target)


def stage_task(root: Path, folder: Path, task_json: Dict, task_dir: Path, settings: Dict[str, str]) -> None:
    """A self-contained task folder: its own files, the shared ones, the shim, the collector, its wheels,
    and the baked settings."""
    shutil.copytree(root / folder, task_dir, ignore=shutil.ignore_patterns("task.json", "node_modules"))
    (task_dir / "task.json").write_text(json.dumps(task_json, indent=2) + "\n", encoding="utf-8")
    (task_dir / BAKED_SETTINGS).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    shared = sorted(path for path in (root / SHARED_TASK_FILES).iterdir() if path.is_file())
    for source in [*shared, root / SHIM]:
        if (task_dir / source.name).exists():
            raise BuildError(
                f"{folder.as_posix()}/{source.name} clashes with {source.relative_to(root).as_posix()}"
            )
        shutil.copy2(source, task_dir / source.name)
    package_dir = task_dir / "src" / "imagetrail"
    package_dir.mkdir(parents=True)
    _copy_sources(root / "src" / "imagetrail", package_dir)
    wheels = vendor.check_vendor_dir(root / "vendor")
    (task_dir / "vendor").mkdir()
    for wheel in wheels.values():
        shutil.copy2(wheel, task_dir / "vendor" / wheel.name)


def stage(options: BuildOptions, staging: Path) -> Dict:
    """Lay out the extension in `staging`; return the final manifest."""
    root = options.repo_root
    manifest = load_json(root / MANIFEST)
    tasks = load_tasks(root, task_folders(manifest))
    version = options.version or manifest.get("version", "")
    major, minor, patch = split_version(version)
    manifest["version"] = version
    if options.publisher:
        manifest["publisher"] = options.publisher
    for task_json in tasks.values():
        task_json["version"] = {"Major": major, "Minor": minor, "Patch": patch}

    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    for decorator in decorator_templates(manifest):
        rendered = render_decorator(
            (root / decorator).read_text(encoding="utf-8"),
            [task["id"] for task in tasks.values()],
            major,
        )
        (staging / decorator).parent.mkdir(parents=True, exist_ok=True)
        (staging / decorator).write_text(rendered, encoding="utf-8")
    for folder, task_json in tasks.items():
        stage_task(root, folder, task_json, staging / folder, baked_settings(options))
    for icon in manifest.get("icons", {}).values():
        if not (staging / icon).exists():
            (staging / icon).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / icon, staging / icon)
    return manifest


def find_tfx() -> str:
    tfx = shutil.which("tfx")
    if tfx is None:
        raise BuildError("tfx-cli is not on PATH; install it with 'npm install -g tfx-cli'")
    return tfx


def run_tfx(staging: Path, output_dir: Path) -> Path:
    command = [
        find_tfx(),
        "extension",
        "create",
        "--root",
        str(staging),
        "--manifest-globs",
        MANIFEST,
        "--output-path",
        str(output_dir),
        "--no-prompt",
        "--no-color",
        "--json",
    ]
    result = subprocess.run(command, cwd=staging, capture_output=True, text=True, timeout=300)
    output = (result.stdout + "\n" + result.stderr).strip()
    if result.returncode != 0:
        raise BuildError(f"tfx extension create failed:\n{output}")
    if TFX_TASK_WARNING in output:
        raise BuildError(f"tfx-cli rejected task.json:\n{output}")
    vsix_files = sorted(output_dir.glob("*.vsix"))
    if len(vsix_files) != 1:
        raise BuildError(f"expected one .vsix in {output_dir}, found {len(vsix_files)}:\n{output}")
    return vsix_files[0]


def build(options: BuildOptions) -> Path:
    """Build the .vsix; return its path. dist/ keeps exactly this one .vsix."""
    output_dir = (options.output_dir or options.repo_root / "dist").resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    for old in output_dir.glob("*.vsix"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="imagetrail-vsix-") as tmp:
        staging = Path(tmp)
        stage(options, staging)
        return run_tfx(staging, output_dir)


def packaged_files(vsix: Path) -> List[str]:
    """Names inside a .vsix (a zip file)."""
    import zipfile

    with zipfile.ZipFile(vsix) as archive:
        return archive.namelist()
