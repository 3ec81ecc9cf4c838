"""Digest reconciliation: ask a registry (OCI Distribution API) which platform manifests an index lists.

``GET /v2/<name>/manifests/<reference>`` with an Accept header naming the OCI image index and the
Docker manifest list (and single manifests, so a plain image answers too). Token auth follows the
registry's ``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` challenge; credentials come
from the Docker config (``auths`` entries) when there is one. Credential helpers are not called.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import requests

from imagetrail.cloud.references import DOCKER_HUB, is_digest, parse_reference
from imagetrail.report import Platform  # the same per-platform manifest the collector reports

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)


class RegistryError(RuntimeError):
    """The registry could not answer; the message names the reference and what to do."""


@dataclass
class Resolved:
    reference: str
    digest: str
    media_type: str
    platforms: List[Platform] = field(default_factory=list)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


def _endpoint(registry: str) -> str:
    if registry == DOCKER_HUB:
        return "https://registry-1.docker.io"
    host = registry.rsplit(":", 1)[0] if not registry.startswith("[") else registry
    # Docker itself only talks plain HTTP to loopback registries unless told otherwise.
    if host in ("localhost", "127.0.0.1", "[::1]") or host.startswith("127."):
        return f"http://{registry}"
    return f"https://{registry}"


def docker_credentials(registry: str, config_path: Optional[Path] = None) -> Optional[Tuple[str, str]]:
    """(user, password) for ``registry`` from the Docker config's ``auths``, if present."""
    path = config_path or Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    try:
        auths = json.loads(path.read_text(encoding="utf-8")).get("auths") or {}
    except (OSError, ValueError):
        return None
    keys = [registry, f"https://{registry}", f"http://{registry}"]
    if registry == DOCKER_HUB:
        keys.append("https://index.docker.io/v1/")
    for key in keys:
        entry = auths.get(key) or {}
        if entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode("utf-8", "replace").partition(":")
            return user, password
        if entry.get("username") and entry.get("password"):
            return entry["username"], entry["password"]
    return None


def _challenge(header: str) -> Tuple[str, Dict[str, str]]:
    scheme, _, rest = header.partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', rest))


class RegistryClient:
    def __init__(self, timeout: float = 30.0, config_path: Optional[Path] = None):
        self.timeout = timeout
        self.config_path = config_path
        self.session = requests.Session()
        self._tokens: Dict[Tuple[str, str], str] = {}

    def _get(self, url: str, registry: str, scope: str) -> requests.Response:
        headers = {"Accept": ACCEPT}
        token = self._tokens.get((registry, scope))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = self.session.get(url, headers=headers, timeout=self.timeout)
        if response.status_code != 401:
            return response
        scheme, params = _challenge(response.headers.get("WWW-Authenticate", ""))
        credentials = docker_credentials(registry, self.config_path)
        if scheme == "basic" and credentials:
            return self.session.get(url, headers={"Accept": ACCEPT}, auth=credentials, timeout=self.timeout)
        if scheme != "bearer" or "realm" not in params:
            return response
        query = {"service": params.get("service", ""), "scope": params.get("scope", scope)}
        answer = self.session.get(params["realm"], params=query, auth=credentials, timeout=self.timeout)
        if answer.status_code != 200:
            raise RegistryError(
                f"{registry}: the token service {params['realm']} refused "
                f"(HTTP {answer.status_code}); log in with 'docker login {registry}'"
            )
        body = answer.json()
        token = body.get("token") or body.get("access_token")
        self._tokens[(registry, scope)] = token
        headers["Authorization"] = f"Bearer {token}"
        return self.session.get(url, headers=headers, timeout=self.timeout)

    def resolve(self, reference: str) -> Resolved:
        name = parse_reference(reference)
        ref = name.digest or name.tag or "latest"
        url = f"{_endpoint(name.registry)}/v2/{name.repository}/manifests/{ref}"
        scope = f"repository:{name.repository}:pull"
        try:
            response = self._get(url, name.registry, scope)
        except requests.RequestException as exc:
            raise RegistryError(f"{reference}: cannot reach {name.registry} ({type(exc).__name__})") from None
        if response.status_code == 404:
            raise RegistryError(f"{reference}: not found in {name.registry} (HTTP 404)")
        if response.status_code != 200:
            raise RegistryError(f"{reference}: {name.registry} answered HTTP {response.status_code}")
        body = response.content
        computed = "sha256:" + hashlib.sha256(body).hexdigest()
        digest = response.headers.get("Docker-Content-Digest") or computed
        if name.digest and computed != name.digest:
            raise RegistryError(f"{reference}: the registry returned content whose digest is {computed}")
        try:
            manifest = json.loads(body)
        except ValueError:
            raise RegistryError(f"{reference}: the manifest is not JSON") from None
        media_type = (
            response.headers.get("Content-Type", "").split(";")[0].strip() or manifest.get("mediaType") or ""
        )
        platforms = []
        if media_type in INDEX_TYPES or manifest.get("manifests"):
            for entry in manifest.get("manifests") or []:
                platform = entry.get("platform") or {}
                if not is_digest(entry.get("digest", "")):
                    continue
                if platform.get("os") == "unknown":
                    continue  # BuildKit attestation manifests, not images
                platforms.append(
                    Platform(
                        entry["digest"],
                        platform.get("os"),
                        platform.get("architecture"),
                        platform.get("variant"),
                    )
                )
        return Resolved(reference=reference, digest=digest, media_type=media_type, platforms=platforms)
