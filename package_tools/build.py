"""Package the Azure DevOps extension (.vsix) with the real tfx-cli.

The repository is copied into a staging folder, where the organisation's backend URL and token
audience are baked into the decorator inputs, the extension and task versions are set in step,
and the task folder receives the shim, the collector sources and the vendored wheels. Then
`tfx extension create` writes exactly one .vsix into dist/.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from package_tools import vendor
from package_tools.errors import BuildError

REPO_ROOT = vendor.REPO_ROOT
MANIFEST = "vss-extension.json"
TASK_DIR = Path("tasks") / "ImageTrailCollector"
DECORATORS = (Path("decorators") / "pre-job.yml", Path("decorators") / "post-job.yml")
SHIM = Path("shim") / "collector-shim.js"
URL_PLACEHOLDER = "__IMAGETRAIL_BACKEND_URL__"
AUDIENCE_PLACEHOLDER = "__IMAGETRAIL_AUDIENCE__"
# What `imagetrail collect` imports; the backend, web and client packages stay out of the task.
COLLECTOR_SOURCES = (
    "__init__.py",
    "__main__.py",
    "cli.py",
    "report.py",
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


def load_json(path: Path) -> Dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise BuildError(f"cannot read {path.name}: {err}") from err


def _yaml_single_quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def render_decorator(text: str, task_id: str, major: int, backend_url: str, audience: str) -> str:
    """Bake the backend URL and audience into the inputs and point at the packaged task major."""
    if URL_PLACEHOLDER not in text or AUDIENCE_PLACEHOLDER not in text:
        raise BuildError("decorator template lacks the backendUrl/audience placeholders")
    text = text.replace(_yaml_single_quoted(URL_PLACEHOLDER), _yaml_single_quoted(backend_url))
    text = text.replace(_yaml_single_quoted(AUDIENCE_PLACEHOLDER), _yaml_single_quoted(audience))
    text, count = re.subn(rf"(task: {re.escape(task_id)})@\d+", rf"\g<1>@{major}", text, flags=re.IGNORECASE)
    if count == 0:
        raise BuildError(f"decorator template does not reference the task {task_id} by GUID")
    return text


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


def stage(options: BuildOptions, staging: Path) -> Dict:
    """Lay out the extension in `staging`; return the final manifest."""
    root = options.repo_root
    manifest = load_json(root / MANIFEST)
    task_json = load_json(root / TASK_DIR / "task.json")
    version = options.version or manifest.get("version", "")
    major, minor, patch = split_version(version)
    manifest["version"] = version
    if options.publisher:
        manifest["publisher"] = options.publisher
    task_json["version"] = {"Major": major, "Minor": minor, "Patch": patch}

    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    for decorator in DECORATORS:
        rendered = render_decorator(
            (root / decorator).read_text(encoding="utf-8"),
            task_json["id"],
            major,
            options.backend_url,
            options.audience,
        )
        (staging / decorator).parent.mkdir(parents=True, exist_ok=True)
        (staging / decorator).write_text(rendered, encoding="utf-8")

    task_dir = staging / TASK_DIR
    shutil.copytree(root / TASK_DIR, task_dir, ignore=shutil.ignore_patterns("task.json", "node_modules"))
    (task_dir / "task.json").write_text(json.dumps(task_json, indent=2) + "\n", encoding="utf-8")
    shutil.copy2(root / SHIM, task_dir / SHIM.name)
    package_dir = task_dir / "src" / "imagetrail"
    package_dir.mkdir(parents=True)
    _copy_sources(root / "src" / "imagetrail", package_dir)
    wheels = vendor.check_vendor_dir(root / "vendor")
    (task_dir / "vendor").mkdir()
    for wheel in wheels.values():
        shutil.copy2(wheel, task_dir / "vendor" / wheel.name)
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
