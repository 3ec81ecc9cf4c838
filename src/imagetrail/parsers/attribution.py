"""What an image says about where it came from: labels and SLSA provenance, as claims.

Pure functions over already-fetched JSON (no store, no network). Each claim keeps where it was
read (``source``) and its evidence word: labels and unsigned provenance are ``claimed`` — anyone
able to push can write them — so they never overrule a collector report, they only fill gaps.

* Azure Pipelines' Docker@2 task labels every image it builds (``com.azure.dev.image.*``):
  build URI ``vstfs:///Build/Build/<id>``, build number, definition name, repository, branch,
  commit, collection URI and team project.
* OCI annotations/labels ``org.opencontainers.image.source`` / ``.revision`` / ``.created``
  (docker/metadata-action writes them).
* BuildKit's SLSA provenance attestation (in-toto statement, predicate v0.2 or v1): the builder
  id (on GitHub Actions, the run URL), the config source (repository and commit), materials.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional
from urllib.parse import urlsplit

from imagetrail.parsers.registry_events import CONTROL_RE

CLAIMED = "claimed"
VERIFIED = "verified"
DISPUTED = "disputed"

KIND_AZURE = "azure-pipelines-labels"
KIND_OCI = "oci-labels"
KIND_PROVENANCE = "slsa-provenance"

SLSA_V02 = "https://slsa.dev/provenance/v0.2"
SLSA_V1 = "https://slsa.dev/provenance/v1"
MAX_FACT = 1024  # longest kept value of any fact
MAX_MATERIALS = 20

AZ = "com.azure.dev.image."
BUILD_URI_RE = re.compile(r"^vstfs:///Build/Build/(\d{1,18})$")
GITHUB_RUN_RE = re.compile(r"^https://github\.com/([^/]+)/([^/]+)/actions/runs/(\d{1,20})(?:/attempts/(\d+))?/?$")
COMMIT_RE = re.compile(r"^[0-9a-fA-F]{7,64}$")


@dataclass
class Claim:
    kind: str
    source: str  # where it was read, e.g. "labels of config sha256:..."
    facts: Dict[str, Any] = field(default_factory=dict)
    evidence: str = CLAIMED

    @property
    def run_id(self) -> Optional[str]:
        return self.facts.get("run_id")

    @property
    def commit(self) -> Optional[str]:
        return self.facts.get("commit")


def _clean(value: Any) -> Optional[str]:
    if not isinstance(value, str):
        return None
    value = CONTROL_RE.sub("", value).strip()  # labels end up in terminals and pages
    return value[:MAX_FACT] if value else None


def _commit(value: Any) -> Optional[str]:
    text = _clean(value)
    return text.lower() if text and COMMIT_RE.match(text) else None


def _facts(**values: Any) -> Dict[str, Any]:
    return {k: v for k, v in values.items() if v not in (None, "", [], {})}


def azure_organization(collection_uri: Optional[str]) -> Optional[str]:
    """``https://dev.azure.com/contoso/`` or ``https://contoso.visualstudio.com/`` -> ``contoso``."""
    if not collection_uri:
        return None
    parts = urlsplit(collection_uri)
    host = (parts.hostname or "").lower()
    if host == "dev.azure.com":
        segment = parts.path.strip("/").split("/")[0]
        return segment.lower() or None
    if host.endswith(".visualstudio.com"):
        return host.split(".")[0]
    # Azure DevOps Server: the collection is the last path segment.
    segment = parts.path.strip("/").split("/")[-1]
    return segment.lower() or None


def from_labels(labels: Mapping[str, Any], source: str) -> List[Claim]:
    """Claims in an image config's labels (or a manifest's annotations)."""
    claims: List[Claim] = []
    get = lambda name: _clean(labels.get(name))  # noqa: E731
    build_uri = get(AZ + "build.builduri")
    if build_uri or get(AZ + "system.teamfoundationcollectionuri"):
        match = BUILD_URI_RE.match(build_uri or "")
        collection = get(AZ + "system.teamfoundationcollectionuri")
        claims.append(Claim(KIND_AZURE, source, _facts(
            system="azure-devops", server_url=collection, organization=azure_organization(collection),
            project=get(AZ + "system.teamproject"), pipeline=get(AZ + "build.definitionname"),
            run_id=match.group(1) if match else None, run_number=get(AZ + "build.buildnumber"),
            repository_uri=get(AZ + "build.repository.uri"), repository=get(AZ + "build.repository.name"),
            branch=get(AZ + "build.sourcebranchname"), commit=_commit(labels.get(AZ + "build.sourceversion")))))
    oci_source = get("org.opencontainers.image.source")
    oci_revision = _commit(labels.get("org.opencontainers.image.revision"))
    if oci_source or oci_revision:
        claims.append(Claim(KIND_OCI, source, _facts(
            repository_uri=oci_source, commit=oci_revision, created=get("org.opencontainers.image.created"),
            **_github_repository(oci_source))))
    return claims


def _github_repository(uri: Optional[str]) -> Dict[str, str]:
    parts = urlsplit(uri or "")
    if (parts.hostname or "").lower() != "github.com":
        return {}
    path = [p for p in parts.path.split("/") if p]
    if len(path) < 2:
        return {}
    repo = path[1][:-4] if path[1].endswith(".git") else path[1]
    return {"system": "github", "organization": path[0].lower(), "project": f"{path[0]}/{repo}"}


def _git_uri(uri: Optional[str]) -> Optional[str]:
    """BuildKit writes git contexts as ``https://github.com/o/r.git#ref``: keep the repository."""
    return uri.split("#", 1)[0] if uri else None


def from_provenance(statement: Mapping[str, Any], source: str) -> Optional[Claim]:
    """A claim from an in-toto statement with a SLSA provenance predicate (v0.2 or v1); None otherwise."""
    kind = statement.get("predicateType")
    predicate = statement.get("predicate")
    if not isinstance(predicate, dict) or kind not in (SLSA_V02, SLSA_V1):
        return None
    if kind == SLSA_V02:
        builder = _clean((predicate.get("builder") or {}).get("id"))
        config = (predicate.get("invocation") or {}).get("configSource") or {}
        materials = predicate.get("materials") or []
        metadata = predicate.get("metadata") or {}
        started = metadata.get("buildStartedOn")
    else:
        run_details = predicate.get("runDetails") or {}
        builder = _clean((run_details.get("builder") or {}).get("id"))
        external = (predicate.get("buildDefinition") or {}).get("externalParameters") or {}
        config = external.get("configSource") or {}
        materials = (predicate.get("buildDefinition") or {}).get("resolvedDependencies") or []
        metadata = run_details.get("metadata") or {}
        started = metadata.get("startedOn")
    config = config if isinstance(config, dict) else {}
    digest = config.get("digest") if isinstance(config.get("digest"), dict) else {}
    # BuildKit also records the VCS source it was given (docker/build-push-action passes it).
    vcs = ((metadata.get("https://mobyproject.org/buildkit@v1#metadata") or {}).get("vcs") or {}) \
        if isinstance(metadata, dict) else {}
    repository_uri = _git_uri(_clean(config.get("uri"))) or _clean(vcs.get("source"))
    commit = _commit(digest.get("sha1")) or _commit(vcs.get("revision"))
    facts = _facts(builder_id=builder, predicate_type=kind, repository_uri=repository_uri, commit=commit,
                   entry_point=_clean(config.get("entryPoint") or config.get("path")),
                   started=_clean(started), materials=_materials(materials), **_github_repository(repository_uri))
    run = GITHUB_RUN_RE.match(builder or "")
    if run:
        facts.update(system="github", organization=run.group(1).lower(), project=f"{run.group(1)}/{run.group(2)}",
                     run_id=run.group(3), run_url=builder)
        if run.group(4):
            facts["run_attempt"] = int(run.group(4))
    return Claim(KIND_PROVENANCE, source, facts)


def _materials(materials: Any) -> List[Dict[str, str]]:
    kept = []
    for item in materials if isinstance(materials, list) else []:
        if not isinstance(item, dict) or not _clean(item.get("uri")):
            continue
        digest = item.get("digest") if isinstance(item.get("digest"), dict) else {}
        kept.append(_facts(uri=_clean(item.get("uri")),
                           digest=next((f"{k}:{v}" for k, v in digest.items() if isinstance(v, str)), None)))
        if len(kept) == MAX_MATERIALS:
            break
    return kept
