"""Read a pushed image from its registry and collect what it claims about its origin.

Manifest -> config labels and annotations; for an index, its platform manifests' configs and
BuildKit's attestation manifests (``vnd.docker.reference.type: attestation-manifest``) with their
in-toto SLSA provenance layers; then the artifacts the OCI referrers API lists for the digest
(in-toto statements and Sigstore bundles, e.g. GitHub artifact attestations; a bundle's signature
is not verified here, so what it says stays ``claimed``).
"""

from __future__ import annotations

import base64
import json
from typing import Any, Dict, List, Optional

from imagetrail.parsers.attribution import Claim, from_labels, from_provenance
from imagetrail.remote.oci_registry import Manifest, RegistryClient, RegistryError

INTOTO = "application/vnd.in-toto+json"
SIGSTORE_BUNDLE_PREFIX = "application/vnd.dev.sigstore.bundle"
ATTESTATION_REF = "vnd.docker.reference.type"
MAX_PLATFORMS = 4  # labels are the same on every platform of one build: a few are enough
MAX_ATTESTATIONS = 16
MAX_LAYERS = 16


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise RegistryError(f"{what} is not JSON") from None


def _statement(blob: bytes, media_type: str, what: str) -> Optional[Dict[str, Any]]:
    document = _json(blob, what)
    if not isinstance(document, dict):
        return None
    if media_type.startswith(SIGSTORE_BUNDLE_PREFIX):
        envelope = document.get("dsseEnvelope") or {}
        try:
            document = json.loads(base64.b64decode(envelope.get("payload") or ""))
        except (ValueError, TypeError):
            return None
    return document if isinstance(document, dict) else None


class Inspector:
    def __init__(self, client: RegistryClient):
        self.client = client

    def claims(self, registry: str, repository: str, digest: str) -> List[Claim]:
        manifest = self.client.manifest(registry, repository, digest)
        claims: List[Claim] = []
        claims += from_labels(manifest.body.get("annotations") or {}, f"annotations of {digest}")
        if manifest.is_index:
            claims += self._index(registry, repository, manifest)
        else:
            claims += self._config(registry, repository, manifest)
        claims += self._referrers(registry, repository, digest)
        return _unique(claims)

    def _config(self, registry: str, repository: str, manifest: Manifest) -> List[Claim]:
        config = manifest.body.get("config") or {}
        config_digest = config.get("digest") if isinstance(config, dict) else None
        if not isinstance(config_digest, str):
            return []
        document = _json(self.client.blob(registry, repository, config_digest), f"config {config_digest}")
        labels = ((document.get("config") or {}).get("Labels") or {}) if isinstance(document, dict) else {}
        return from_labels(labels if isinstance(labels, dict) else {}, f"labels of config {config_digest}")

    def _index(self, registry: str, repository: str, index: Manifest) -> List[Claim]:
        claims: List[Claim] = []
        platforms = attestations = 0
        for entry in index.body.get("manifests") or []:
            if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
                continue
            annotations = entry.get("annotations") or {}
            if annotations.get(ATTESTATION_REF) == "attestation-manifest":
                if attestations < MAX_ATTESTATIONS:
                    attestations += 1
                    claims += self._attestation(registry, repository, entry["digest"])
            elif platforms < MAX_PLATFORMS:
                platforms += 1
                claims += self._config(registry, repository,
                                       self.client.manifest(registry, repository, entry["digest"]))
        return claims

    def _attestation(self, registry: str, repository: str, digest: str) -> List[Claim]:
        manifest = self.client.manifest(registry, repository, digest)
        claims = []
        for layer in (manifest.body.get("layers") or [])[:MAX_LAYERS]:
            media_type = layer.get("mediaType") or "" if isinstance(layer, dict) else ""
            if media_type != INTOTO and not media_type.startswith(SIGSTORE_BUNDLE_PREFIX):
                continue
            blob = self.client.blob(registry, repository, layer["digest"])
            statement = _statement(blob, media_type, f"attestation layer {layer['digest']}")
            claim = from_provenance(statement, f"attestation {digest}") if statement else None
            if claim:
                claims.append(claim)
        return claims

    def _referrers(self, registry: str, repository: str, digest: str) -> List[Claim]:
        claims: List[Claim] = []
        for descriptor in self.client.referrers(registry, repository, digest)[:MAX_ATTESTATIONS]:
            claims += self._attestation(registry, repository, descriptor["digest"])
        return claims


def _unique(claims: List[Claim]) -> List[Claim]:
    seen, kept = set(), []
    for claim in claims:
        key = (claim.kind, claim.source)
        if key not in seen:
            seen.add(key)
            kept.append(claim)
    return kept
