"""Building OCI content for the tests: an OCI image layout (for skopeo) and direct Distribution API uploads."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
INTOTO = "application/vnd.in-toto+json"
SIGSTORE_BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"


def canonical(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, **extra: Any) -> Dict[str, Any]:
    return {"mediaType": media_type, "digest": sha(data), "size": len(data), **extra}


class Content:
    """Blobs by digest plus the manifests that tie them together."""

    def __init__(self) -> None:
        self.blobs: Dict[str, bytes] = {}

    def add(self, data: bytes) -> str:
        self.blobs[sha(data)] = data
        return sha(data)

    def image(self, text: str, labels: Optional[Dict[str, str]] = None) -> Tuple[Dict[str, Any], bytes]:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            info = tarfile.TarInfo("hello.txt")
            info.size = len(text.encode())
            archive.addfile(info, io.BytesIO(text.encode()))
        layer = buffer.getvalue()
        config = canonical({"architecture": "amd64", "os": "linux", "config": {"Labels": labels or {}},
                            "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}})
        self.add(layer)
        self.add(config)
        manifest = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                              "config": descriptor(OCI_CONFIG, config), "layers": [descriptor(OCI_LAYER, layer)]})
        self.add(manifest)
        return descriptor(OCI_MANIFEST, manifest, platform={"architecture": "amd64", "os": "linux"}), manifest

    def attestation(self, subject: Dict[str, Any], statement: Dict[str, Any]) -> Dict[str, Any]:
        """A BuildKit attestation manifest for ``subject`` carrying one in-toto statement."""
        layer = canonical(statement)
        config = canonical({"architecture": "unknown", "os": "unknown", "config": {}, "rootfs": {"type": "layers",
                                                                                                 "diff_ids": [sha(layer)]}})
        self.add(layer)
        self.add(config)
        manifest = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                              "layers": [descriptor(INTOTO, layer, annotations={
                                  "in-toto.io/predicate-type": statement["predicateType"]})]})
        self.add(manifest)
        return descriptor(OCI_MANIFEST, manifest, platform={"architecture": "unknown", "os": "unknown"},
                          annotations={"vnd.docker.reference.digest": subject["digest"],
                                       "vnd.docker.reference.type": "attestation-manifest"})

    def index(self, manifests: List[Dict[str, Any]]) -> bytes:
        index = canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
        self.add(index)
        return index

    def sigstore_referrer(self, subject: Dict[str, Any], statement: Dict[str, Any]) -> Tuple[Dict[str, Any], bytes]:
        """An artifact manifest whose layer is a Sigstore bundle (as GitHub artifact attestations are stored)."""
        bundle = canonical({"mediaType": SIGSTORE_BUNDLE, "dsseEnvelope": {
            "payloadType": "application/vnd.in-toto+json",
            "payload": base64.b64encode(canonical(statement)).decode(), "signatures": [{"sig": "bm90LXZlcmlmaWVk"}]}})
        empty = b"{}"
        self.add(bundle)
        self.add(empty)
        manifest = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SIGSTORE_BUNDLE,
                              "config": descriptor(OCI_EMPTY, empty), "layers": [descriptor(SIGSTORE_BUNDLE, bundle)],
                              "subject": {k: subject[k] for k in ("mediaType", "digest", "size")}})
        self.add(manifest)
        return descriptor(OCI_MANIFEST, manifest, artifactType=SIGSTORE_BUNDLE), manifest

    def write_layout(self, directory: Path, tag: str, index: bytes) -> None:
        """An OCI image layout whose index.json names ``index`` as ``tag`` (what ``skopeo copy oci:`` reads)."""
        (directory / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        for digest, data in self.blobs.items():
            (directory / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
        (directory / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        (directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
            descriptor(OCI_INDEX, index, annotations={"org.opencontainers.image.ref.name": tag})]}))

    def upload(self, registry: str, repository: str, auth: Tuple[str, str], manifests: List[Tuple[str, bytes, str]]) -> None:
        """Upload every blob, then each (reference, manifest, media type) over the Distribution API."""
        base = f"http://{registry}/v2/{repository}"
        for digest, data in self.blobs.items():
            if any(data is m for _, m, _ in manifests):
                continue
            start = requests.post(f"{base}/blobs/uploads/", auth=auth, timeout=30)
            assert start.status_code == 202, start.text
            location = start.headers["Location"]
            location = location if location.startswith("http") else f"http://{registry}{location}"
            done = requests.put(location, params={"digest": digest}, data=data, auth=auth, timeout=30,
                                headers={"Content-Type": "application/octet-stream"})
            assert done.status_code == 201, done.text
        for reference, data, media_type in manifests:
            put = requests.put(f"{base}/manifests/{reference}", data=data, auth=auth, timeout=30,
                               headers={"Content-Type": media_type})
            assert put.status_code == 201, put.text


def github_provenance(subject_digest: str, version: str, run_url: str, repo: str, commit: str) -> Dict[str, Any]:
    """A SLSA provenance statement shaped as BuildKit writes it on GitHub Actions (v0.2 or v1)."""
    subject = [{"name": "pkg:docker/app", "digest": {"sha256": subject_digest.split(":")[1]}}]
    source = {"uri": f"https://github.com/{repo}.git#refs/heads/main", "digest": {"sha1": commit},
              "entryPoint": "Dockerfile"}
    material = [{"uri": "pkg:docker/alpine@3.20", "digest": {"sha256": "c" * 64}}]
    if version == "v0.2":
        return {"_type": "https://in-toto.io/Statement/v0.1", "predicateType": "https://slsa.dev/provenance/v0.2",
                "subject": subject, "predicate": {"builder": {"id": run_url},
                                                  "buildType": "https://mobyproject.org/buildkit@v1",
                                                  "invocation": {"configSource": source}, "materials": material}}
    return {"_type": "https://in-toto.io/Statement/v1", "predicateType": "https://slsa.dev/provenance/v1",
            "subject": subject, "predicate": {
                "buildDefinition": {"buildType": "https://github.com/moby/buildkit/blob/master/docs/attestations/"
                                                 "slsa-definitions.md",
                                    "externalParameters": {"configSource": {"uri": source["uri"],
                                                                            "digest": source["digest"],
                                                                            "path": "Dockerfile"}},
                                    "resolvedDependencies": material},
                "runDetails": {"builder": {"id": run_url}, "metadata": {"invocationID": "x"}}}}
