"""Parse vulnerability reports (Trivy and Grype JSON), detected by content.

Supported: ``trivy image --format json`` (SchemaVersion 2), the ``trivy k8s --format json``
"Resources" report, ``grype -o json``, and Trivy Operator ``VulnerabilityReport`` /
``ClusterVulnerabilityReport`` resources (one, or a list as ``kubectl get -o json`` prints it). Every image must carry a manifest digest (Trivy
``Metadata.RepoDigests``; Grype ``source.target.repoDigests`` / ``source.target.manifestDigest``):
that is the only key the rest of ImageTrail can join on. Errors name the file and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple

from imagetrail import json_input
from imagetrail import severity as sev
from imagetrail.reference import is_digest

OPERATOR_KINDS = ("VulnerabilityReport", "ClusterVulnerabilityReport")
# Where each format keeps a finding's id, package, installed and fixed versions, and severity.
TRIVY_FIELDS = ("VulnerabilityID", "PkgName", "InstalledVersion", "FixedVersion", "Severity")
OPERATOR_FIELDS = ("vulnerabilityID", "resource", "installedVersion", "fixedVersion", "severity")


class ScanFormatError(ValueError):
    """The report cannot be ingested; the message names the file and the field."""


@dataclass
class ParsedFinding:
    vulnerability_id: str
    package: str
    installed_version: Optional[str]
    fixed_version: Optional[str]
    severity: int


@dataclass
class ParsedImage:
    artifact: Optional[str]
    digests: List[str]
    findings: List[ParsedFinding]
    # (index digest, manifest digest, os, architecture) when the report names both
    relations: List[Tuple[str, str, Optional[str], Optional[str]]] = field(default_factory=list)
    # When this image was scanned, where it differs from the report's (Trivy Operator: per resource)
    scanned_at: Optional[datetime] = None


@dataclass
class ParsedReport:
    format: str  # trivy-image | trivy-k8s | grype
    scanner: str
    scanner_version: Optional[str]
    db_version: Optional[str]
    scanned_at: Optional[datetime]
    images: List[ParsedImage]
    warnings: List[str] = field(default_factory=list)


def parse_report(data: bytes, file_name: str) -> ParsedReport:
    try:
        document = json_input.loads(data)
        json_input.check_depth(document)
    except json_input.JsonInputError as exc:
        raise ScanFormatError(f"{file_name}: {exc}") from None
    except UnicodeDecodeError:
        raise ScanFormatError(f"{file_name}: not UTF-8 text; expected a Trivy or Grype JSON report") from None
    except json.JSONDecodeError as exc:
        # A complete report ends with its closing brace; a cut-off upload or disk-full write does not.
        hint = " (the file looks truncated)" if data.rstrip()[-1:] not in (b"}", b"]") else ""
        raise ScanFormatError(
            f"{file_name}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}{hint}"
        ) from None
    if not isinstance(document, dict):
        raise ScanFormatError(
            f"{file_name}: the top level is a {type(document).__name__}, expected a JSON "
            "object (a Trivy or Grype report)"
        )
    parser = _Parser(file_name)
    if "SchemaVersion" in document:
        return parser.trivy_image(document)
    if "Resources" in document and "ClusterName" in document:
        return parser.trivy_k8s(document)
    if "matches" in document and "source" in document:
        return parser.grype(document)
    if document.get("kind") in OPERATOR_KINDS or (
        document.get("kind") == "List" or str(document.get("kind", "")) in {k + "List" for k in OPERATOR_KINDS}
    ):
        return parser.trivy_operator(document)
    raise ScanFormatError(
        f"{file_name}: not a supported report: expected Trivy JSON (field SchemaVersion), a Trivy k8s "
        "report (fields ClusterName and Resources) or Grype JSON (fields matches and source); "
        "a Trivy Operator VulnerabilityReport; SARIF, CycloneDX and table output are not accepted"
    )


def _time(value: Any) -> Optional[datetime]:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    # Go prints up to 9 fractional digits; Python 3.9/3.10 fromisoformat accepts 6.
    if "." in text:
        head, _, tail = text.partition(".")
        count = len(tail) - len(tail.lstrip("0123456789"))
        digits, zone = tail[:count], tail[count:]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    try:
        parsed = datetime.fromisoformat(text)
        return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError):  # not a time, or not one that exists in UTC (year 1 / 9999 edges)
        return None


def _digest_of(repo_digest: Any) -> Optional[str]:
    if not isinstance(repo_digest, str):
        return None
    candidate = repo_digest.rsplit("@", 1)[-1].strip().lower()
    return candidate if is_digest(candidate) else None


class _Parser:
    def __init__(self, file_name: str):
        self.file_name = file_name

    def fail(self, path: str, problem: str) -> ScanFormatError:
        return ScanFormatError(f"{self.file_name}: {path} {problem}")

    def text(self, obj: Dict[str, Any], key: str, path: str, required: bool = True) -> Optional[str]:
        value = obj.get(key)
        if value is None or value == "":
            if required:
                raise self.fail(f"{path}.{key}", "is missing")
            return None
        if not isinstance(value, (str, int, float)):
            raise self.fail(f"{path}.{key}", f"must be a string, not {type(value).__name__}")
        return str(value)

    def array(self, obj: Dict[str, Any], key: str, path: str) -> List[Any]:
        value = obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(f"{path}.{key}", f"must be a list, not {type(value).__name__}")
        return value

    def obj(self, value: Any, path: str) -> Dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"must be an object, not {type(value).__name__}")
        return value

    def finding(self, vuln: Dict[str, Any], path: str, names: Tuple[str, str, str, str, str]) -> ParsedFinding:
        """One finding; ``names`` are the report's keys for id, package, installed, fixed and severity."""
        id_key, package_key, installed_key, fixed_key, severity_key = names
        return ParsedFinding(
            vulnerability_id=self.text(vuln, id_key, path).upper(),
            package=self.text(vuln, package_key, path),
            installed_version=self.text(vuln, installed_key, path, required=False),
            fixed_version=self.text(vuln, fixed_key, path, required=False),
            severity=sev.rank(self.text(vuln, severity_key, path, required=False)),
        )

    # --- Trivy ---------------------------------------------------------------------------------

    def _trivy_digests(self, metadata: Dict[str, Any], path: str) -> List[str]:
        repo_digests = self.array(metadata, "RepoDigests", path)
        digests = []
        for index, item in enumerate(repo_digests):
            digest = _digest_of(item)
            if digest is None:
                raise self.fail(
                    f"{path}.RepoDigests[{index}]", f"is not <repository>@sha256:<64 hex>: {item!r}"
                )
            digests.append(digest)
        if not digests:
            raise self.fail(
                f"{path}.RepoDigests",
                "is missing or empty: the image was scanned from a local "
                "build that was never pushed or pulled, so it cannot be joined by digest; scan the "
                "pushed image (trivy image <registry>/<repository>@sha256:...)",
            )
        return list(dict.fromkeys(digests))

    def _trivy_findings(self, results: List[Any], path: str) -> List[ParsedFinding]:
        findings = []
        for r_index, result in enumerate(results):
            result_path = f"{path}[{r_index}]"
            result = self.obj(result, result_path)
            for v_index, vuln in enumerate(self.array(result, "Vulnerabilities", result_path)):
                vuln_path = f"{result_path}.Vulnerabilities[{v_index}]"
                findings.append(self.finding(self.obj(vuln, vuln_path), vuln_path, TRIVY_FIELDS))
        return findings

    def _trivy_versions(self, document: Dict[str, Any]) -> Tuple[Optional[str], Optional[str]]:
        trivy = document.get("Trivy") if isinstance(document.get("Trivy"), dict) else {}
        version = trivy.get("Version") if isinstance(trivy.get("Version"), str) else None
        db = trivy.get("VulnerabilityDB") if isinstance(trivy.get("VulnerabilityDB"), dict) else {}
        db_version = None
        if db:
            db_version = " ".join(str(db[k]) for k in ("Version", "UpdatedAt") if db.get(k)) or None
        return version, db_version

    def trivy_image(self, document: Dict[str, Any]) -> ParsedReport:
        version = document.get("SchemaVersion")
        if version != 2:
            raise self.fail(
                "SchemaVersion",
                f"is {version!r}; only Trivy JSON SchemaVersion 2 is supported (Trivy 0.20 and later)",
            )
        artifact_type = document.get("ArtifactType")
        if artifact_type not in (None, "container_image"):
            raise self.fail(
                "ArtifactType",
                f"is {artifact_type!r}; only container image scans (trivy image) carry a digest to join on",
            )
        metadata = self.obj(document.get("Metadata"), "Metadata") if "Metadata" in document else None
        if metadata is None:
            raise self.fail("Metadata", "is missing (it holds RepoDigests, the image's manifest digests)")
        image = ParsedImage(
            artifact=self.text(document, "ArtifactName", "$", required=False),
            digests=self._trivy_digests(metadata, "Metadata"),
            findings=self._trivy_findings(self.array(document, "Results", "$"), "Results"),
        )
        scanner_version, db_version = self._trivy_versions(document)
        return ParsedReport(
            format="trivy-image",
            scanner="trivy",
            scanner_version=scanner_version,
            db_version=db_version,
            scanned_at=_time(document.get("CreatedAt")),
            images=[image],
        )

    def trivy_k8s(self, document: Dict[str, Any]) -> ParsedReport:
        resources = self.array(document, "Resources", "$")
        images: Dict[Tuple[str, ...], ParsedImage] = {}
        warnings = []
        for index, resource in enumerate(resources):
            path = f"Resources[{index}]"
            resource = self.obj(resource, path)
            kind, namespace = resource.get("Kind") or "?", resource.get("Namespace") or "-"
            where = f"{kind} {namespace}/{resource.get('Name') or '?'}"
            if resource.get("Error"):
                warnings.append(
                    f"{path} ({where}) was not scanned by Trivy: "
                    f"{str(resource['Error']).splitlines()[0][:200]}"
                )
                continue
            metadata = self.array(resource, "Metadata", path)
            results = self.array(resource, "Results", path)
            if not metadata:
                if any(
                    self.array(self.obj(r, f"{path}.Results[{i}]"), "Vulnerabilities", f"{path}.Results[{i}]")
                    for i, r in enumerate(results)
                ):
                    raise self.fail(
                        f"{path}.Metadata",
                        "is missing, but the resource has vulnerabilities: "
                        "they cannot be joined to an image digest",
                    )
                continue  # misconfiguration-only or empty entries
            if len(metadata) != 1:
                raise self.fail(
                    f"{path}.Metadata",
                    f"lists {len(metadata)} images; Trivy reports one image per "
                    "resource entry, so the results cannot be attributed",
                )
            meta = self.obj(metadata[0], f"{path}.Metadata[0]")
            digests = self._trivy_digests(meta, f"{path}.Metadata[0]")
            tags = self.array(meta, "RepoTags", f"{path}.Metadata[0]")
            key = tuple(digests)
            if key in images:
                continue  # the same image in another workload: one scan of it is enough
            images[key] = ParsedImage(
                artifact=tags[0] if tags and isinstance(tags[0], str) else None,
                digests=digests,
                findings=self._trivy_findings(results, f"{path}.Results"),
            )
        if not images:
            raise self.fail("Resources", "holds no scanned image with a digest")
        scanner_version, db_version = self._trivy_versions(document)
        return ParsedReport(
            format="trivy-k8s",
            scanner="trivy",
            scanner_version=scanner_version,
            db_version=db_version,
            scanned_at=_time(document.get("CreatedAt")),
            images=list(images.values()),
            warnings=warnings,
        )

    # --- Grype ---------------------------------------------------------------------------------

    def grype(self, document: Dict[str, Any]) -> ParsedReport:
        source = self.obj(document.get("source"), "source")
        source_type = source.get("type")
        if source_type != "image":
            raise self.fail(
                "source.type",
                f"is {source_type!r}; only image scans (grype <image>) carry a digest to join on",
            )
        target = self.obj(source.get("target"), "source.target")
        manifest = target.get("manifestDigest")
        if manifest is not None and not is_digest(str(manifest).lower()):
            raise self.fail("source.target.manifestDigest", f"is not sha256:<64 hex>: {manifest!r}")
        repo_digests = []
        for index, item in enumerate(self.array(target, "repoDigests", "source.target")):
            digest = _digest_of(item)
            if digest is None:
                raise self.fail(
                    f"source.target.repoDigests[{index}]", f"is not <repository>@sha256:<64 hex>: {item!r}"
                )
            repo_digests.append(digest)
        digests = list(dict.fromkeys(([manifest.lower()] if manifest else []) + repo_digests))
        if not digests:
            raise self.fail(
                "source.target.repoDigests",
                "and source.target.manifestDigest are missing: the "
                "image cannot be joined by digest; scan the pushed image by its registry reference",
            )
        relations = []
        if manifest:
            # repoDigests is what the registry served for the tag: an index when the image is multi-arch;
            # manifestDigest is the platform manifest Grype actually scanned.
            for digest in repo_digests:
                if digest != manifest.lower():
                    relations.append((digest, manifest.lower(), target.get("os"), target.get("architecture")))
        findings = []
        for index, match in enumerate(self.array(document, "matches", "$")):
            path = f"matches[{index}]"
            match = self.obj(match, path)
            vulnerability = self.obj(match.get("vulnerability"), f"{path}.vulnerability")
            artifact = self.obj(match.get("artifact"), f"{path}.artifact")
            fix = vulnerability.get("fix") if isinstance(vulnerability.get("fix"), dict) else {}
            versions = [str(v) for v in fix.get("versions") or [] if v]
            findings.append(
                ParsedFinding(
                    vulnerability_id=self.text(vulnerability, "id", f"{path}.vulnerability").upper(),
                    package=self.text(artifact, "name", f"{path}.artifact"),
                    installed_version=self.text(artifact, "version", f"{path}.artifact", required=False),
                    fixed_version=", ".join(versions) or None,
                    severity=sev.rank(
                        self.text(vulnerability, "severity", f"{path}.vulnerability", required=False)
                    ),
                )
            )
        descriptor = document.get("descriptor") if isinstance(document.get("descriptor"), dict) else {}
        if descriptor.get("name") not in (None, "grype"):
            raise self.fail("descriptor.name", f"is {descriptor.get('name')!r}, expected 'grype'")
        db = descriptor.get("db") if isinstance(descriptor.get("db"), dict) else {}
        status = db.get("status") if isinstance(db.get("status"), dict) else db  # newer Grype nests it
        db_version = (
            " ".join(
                f"{k}={status[k]}" for k in ("schemaVersion", "built") if status.get(k) not in (None, "")
            )
            or None
        )
        return ParsedReport(
            format="grype",
            scanner="grype",
            scanner_version=descriptor.get("version") if isinstance(descriptor.get("version"), str) else None,
            db_version=db_version,
            scanned_at=_time(descriptor.get("timestamp")),
            images=[
                ParsedImage(
                    artifact=target.get("userInput") if isinstance(target.get("userInput"), str) else None,
                    digests=digests,
                    findings=findings,
                    relations=relations,
                )
            ],
        )

    # --- Trivy Operator ------------------------------------------------------------------------

    def trivy_operator(self, document: Dict[str, Any]) -> ParsedReport:
        """VulnerabilityReport resources: one image each, keyed by ``report.artifact.digest``.

        Trivy Operator releases before the digest field name the image only by repository and tag;
        ``imagetrail k8s sync --watch`` fills the digest in from the running pod the report's labels
        name. A report still without one cannot be joined and is left out with a warning.
        """
        single = document.get("kind") in OPERATOR_KINDS
        items = [document] if single else self.array(document, "items", "$")
        images: List[ParsedImage] = []
        warnings: List[str] = []
        versions = set()
        for index, item in enumerate(items):
            path = "$" if single else f"items[{index}]"
            item = self.obj(item, path)
            if item.get("kind") not in (None, *OPERATOR_KINDS):
                raise self.fail(f"{path}.kind", f"is {item.get('kind')!r}, expected one of {OPERATOR_KINDS}")
            metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
            name = "/".join(str(metadata[k]) for k in ("namespace", "name") if metadata.get(k)) or path
            report = self.obj(item.get("report"), f"{path}.report")
            artifact = self.obj(report.get("artifact") or {}, f"{path}.report.artifact")
            digest = _digest_of(artifact.get("digest"))
            if digest is None:
                warnings.append(
                    f"{name}: report.artifact.digest is missing or not sha256:<64 hex>, so the report "
                    "cannot be joined to an image; left out"
                )
                continue
            registry = report.get("registry") if isinstance(report.get("registry"), dict) else {}
            repository = self.text(artifact, "repository", f"{path}.report.artifact", required=False)
            tag = self.text(artifact, "tag", f"{path}.report.artifact", required=False)
            reference = "/".join(filter(None, [registry.get("server"), repository])) or None
            scanner = report.get("scanner") if isinstance(report.get("scanner"), dict) else {}
            if isinstance(scanner.get("version"), str):
                versions.add(scanner["version"])
            findings = []
            for v_index, vuln in enumerate(self.array(report, "vulnerabilities", f"{path}.report")):
                vuln_path = f"{path}.report.vulnerabilities[{v_index}]"
                findings.append(self.finding(self.obj(vuln, vuln_path), vuln_path, OPERATOR_FIELDS))
            images.append(
                ParsedImage(
                    artifact=f"{reference}:{tag}" if reference and tag else reference,
                    digests=[digest],
                    findings=findings,
                    scanned_at=_time(report.get("updateTimestamp")),
                )
            )
        if not images:
            detail = f": {warnings[0]}" if warnings else ""
            raise self.fail("$", f"holds no VulnerabilityReport with an image digest{detail}")
        return ParsedReport(
            format="trivy-operator",
            scanner="trivy",
            scanner_version=", ".join(sorted(versions)) or None,
            db_version=None,
            scanned_at=max((i.scanned_at for i in images if i.scanned_at), default=None),
            images=images,
            warnings=warnings,
        )
