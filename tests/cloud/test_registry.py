"""Digest reconciliation against the REAL registry.

A multi-platform index is pushed over the Distribution API.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import uuid

import pytest
import requests

from imagetrail.remote.oci_registry import OCI_INDEX, RegistryClient, RegistryError

pytestmark = pytest.mark.e2e


def _import_and_push(registry: str, reference: str, content: bytes) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))
    subprocess.run(
        ["docker", "import", "-", reference],
        input=buffer.getvalue(),
        check=True,
        capture_output=True,
        timeout=120,
    )
    subprocess.run(["docker", "push", reference], check=True, capture_output=True, timeout=300)
    subprocess.run(["docker", "rmi", reference], capture_output=True, timeout=60)


def _descriptor(registry: str, repository: str, tag: str) -> dict:
    accept = (
        "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
    )
    response = requests.get(
        f"http://{registry}/v2/{repository}/manifests/{tag}", headers={"Accept": accept}, timeout=30
    )
    response.raise_for_status()
    return {
        "mediaType": response.headers["Content-Type"],
        "digest": response.headers["Docker-Content-Digest"],
        "size": len(response.content),
    }


@pytest.fixture(scope="module")
def multi_arch(registry):
    repository = f"imagetrail-cloud/multi-{uuid.uuid4().hex[:8]}"
    platforms = {}
    for arch in ("amd64", "arm64"):
        _import_and_push(registry, f"{registry}/{repository}:{arch}", f"built for {arch}\n".encode())
        platforms[arch] = _descriptor(registry, repository, arch)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {**platforms["amd64"], "platform": {"os": "linux", "architecture": "amd64"}},
            {**platforms["arm64"], "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ],
    }
    put = requests.put(
        f"http://{registry}/v2/{repository}/manifests/latest",
        json=index,
        headers={"Content-Type": OCI_INDEX},
        timeout=30,
    )
    assert put.status_code == 201, put.text
    return repository, put.headers["Docker-Content-Digest"], platforms


def test_index_resolves_to_its_platform_manifests(registry, multi_arch):
    repository, index_digest, platforms = multi_arch
    resolved = RegistryClient().resolve(f"{registry}/{repository}:latest")
    assert resolved.is_index and resolved.digest == index_digest
    assert [(p.digest, p.architecture, p.variant) for p in resolved.platforms] == [
        (platforms["amd64"]["digest"], "amd64", None),
        (platforms["arm64"]["digest"], "arm64", "v8"),
    ]
    by_digest = RegistryClient().resolve(f"{registry}/{repository}@{index_digest}")
    assert by_digest.digest == index_digest and len(by_digest.platforms) == 2


def test_single_platform_manifest_has_no_platforms(registry, multi_arch):
    repository, _, platforms = multi_arch
    resolved = RegistryClient().resolve(f"{registry}/{repository}:amd64")
    assert not resolved.is_index and resolved.platforms == []
    assert resolved.digest == platforms["amd64"]["digest"]


def test_unknown_tag_is_a_clear_error(registry, multi_arch):
    repository, _, _ = multi_arch
    with pytest.raises(RegistryError, match=r"not found in 127\.0\.0\.1:5000|not found in"):
        RegistryClient().resolve(f"{registry}/{repository}:no-such-tag")


def test_resolved_relations_let_the_explorer_match_either_digest(registry, multi_arch, api):
    repository, index_digest, platforms = multi_arch
    resolved = RegistryClient().resolve(f"{registry}/{repository}:latest")
    body = {
        "source": "registry",
        "relations": [
            {
                "index_digest": resolved.digest,
                "manifest_digest": p.digest,
                "os": p.os,
                "architecture": p.architecture,
                "variant": p.variant,
            }
            for p in resolved.platforms
        ],
    }
    assert api.client.post("/v1/image-relations", json=body).json() == {"received": 2, "new": 2}
    from imagetrail.queries.trail import digest_family, related_digests

    with api.app.state.sessions() as session:
        family = digest_family(session, platforms["arm64"]["digest"])
        related = related_digests(session, [platforms["arm64"]["digest"]])
    assert family == {platforms["arm64"]["digest"], index_digest}
    assert [(r.digest, r.relation) for r in related[platforms["arm64"]["digest"]]] == [(index_digest, "index")]
