"""The one registry client (OCI Distribution API): manifests, blobs, referrers, catalog and tags.

Used by ``imagetrail registry resolve`` / ``sync`` on a person's machine, and by the backend's
attribution worker, which reads pushed images off the request path under a stricter policy:
only registries in an allowlist (``IMAGETRAIL_REGISTRIES``; never a host an event merely names),
plain HTTP only for loopback and listed insecure registries, bounded sizes and timeouts.

Token auth follows the registry's ``WWW-Authenticate: Bearer realm=...,service=...,scope=...``
challenge; credentials come from a Docker ``config.json`` (``auths``: ``auth``, or
``identitytoken``, exchanged as an OAuth2 refresh token as ``docker login`` does for ACR).
Credential helpers are not called.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Dict, List, Optional, Tuple

import requests

from imagetrail.bounded_read import BodyTooLarge, read_within
from imagetrail.reference import DOCKER_HUB, InvalidReference, is_digest, parse_reference
from imagetrail.report import Platform  # the same per-platform manifest the collector reports

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # the limit Distribution itself puts on manifests
MAX_BLOB_BYTES = 8 * 1024 * 1024  # configs and attestation layers; image layers are never read


class RegistryError(RuntimeError):
    """The registry could not answer; the message names the reference and what to do."""


class RegistryNotAllowed(RegistryError):
    """The registry is not in the allowlist (``IMAGETRAIL_REGISTRIES``)."""


@dataclass
class Resolved:
    reference: str
    digest: str
    media_type: str
    platforms: List[Platform] = field(default_factory=list)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


@dataclass
class Manifest:
    digest: str
    media_type: str
    body: Dict[str, Any]

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES or isinstance(self.body.get("manifests"), list)


def is_loopback(registry: str) -> bool:
    host = registry.rsplit(":", 1)[0] if not registry.startswith("[") else registry.split("]")[0] + "]"
    return host in ("localhost", "[::1]") or host.startswith("127.")


def _endpoint(registry: str, insecure: Collection[str] = ()) -> str:
    if registry == DOCKER_HUB:
        return "https://registry-1.docker.io"
    # Docker itself only talks plain HTTP to loopback registries unless told otherwise.
    if is_loopback(registry) or registry in insecure:
        return f"http://{registry}"
    return f"https://{registry}"


def _auth_entry(registry: str, config_path: Optional[Path]) -> Dict[str, Any]:
    path = config_path or Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    try:
        auths = json.loads(path.read_text(encoding="utf-8")).get("auths") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    keys = [registry, f"https://{registry}", f"http://{registry}"]
    if registry == DOCKER_HUB:
        keys.append("https://index.docker.io/v1/")
    for key in keys:
        entry = auths.get(key)
        if isinstance(entry, dict) and entry:
            return entry
    return {}


def docker_credentials(registry: str, config_path: Optional[Path] = None) -> Optional[Tuple[str, str]]:
    """(user, password) for ``registry`` from the Docker config's ``auths``, if present."""
    entry = _auth_entry(registry, config_path)
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
    def __init__(self, timeout: float = 30.0, config_path: Optional[Path] = None, *,
                 allowed: Optional[Collection[str]] = None, insecure: Collection[str] = (),
                 max_manifest_bytes: int = MAX_MANIFEST_BYTES, max_blob_bytes: int = MAX_BLOB_BYTES):
        self.timeout = timeout
        self.config_path = config_path
        # None: any registry (a person's own CLI); otherwise only these hosts are ever contacted.
        self.allowed = None if allowed is None else frozenset(r.lower() for r in allowed)
        self.insecure = frozenset(r.lower() for r in insecure)
        self.max_manifest_bytes = max_manifest_bytes
        self.max_blob_bytes = max_blob_bytes
        self.session = requests.Session()
        self._tokens: Dict[Tuple[str, str], str] = {}

    # -- transport ------------------------------------------------------------------------------

    def check_allowed(self, registry: str) -> None:
        if self.allowed is not None and registry.lower() not in self.allowed:
            raise RegistryNotAllowed(f"{registry} is not in IMAGETRAIL_REGISTRIES; ImageTrail does not contact it")

    def _token(self, registry: str, params: Dict[str, str], scope: str) -> Optional[str]:
        entry = _auth_entry(registry, self.config_path)
        query = {"service": params.get("service", ""), "scope": params.get("scope", scope)}
        if entry.get("identitytoken"):
            answer = self.session.post(params["realm"], data={
                **query, "grant_type": "refresh_token", "refresh_token": entry["identitytoken"],
                "client_id": "imagetrail"}, timeout=self.timeout, allow_redirects=False)
        else:
            answer = self.session.get(params["realm"], params=query, auth=docker_credentials(registry, self.config_path),
                                      timeout=self.timeout, allow_redirects=False)
        if answer.status_code != 200:
            raise RegistryError(f"{registry}: the token service {params['realm']} refused (HTTP {answer.status_code}); "
                                f"log in with 'docker login {registry}'")
        try:
            body = answer.json()
        except ValueError:
            raise RegistryError(f"{registry}: the token service answered something other than JSON") from None
        return body.get("token") or body.get("access_token")

    def _get(self, url: str, registry: str, scope: str, accept: str = ACCEPT) -> requests.Response:
        self.check_allowed(registry)
        headers = {"Accept": accept}
        token = self._tokens.get((registry, scope))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = self.session.get(url, headers=headers, timeout=self.timeout, stream=True)
        if response.status_code != 401:
            return response
        response.close()
        scheme, params = _challenge(response.headers.get("WWW-Authenticate", ""))
        credentials = docker_credentials(registry, self.config_path)
        if scheme == "basic" and credentials:
            return self.session.get(url, headers={"Accept": accept}, auth=credentials, timeout=self.timeout,
                                    stream=True)
        if scheme != "bearer" or "realm" not in params:
            return response
        token = self._token(registry, params, scope)
        if token:
            self._tokens[(registry, scope)] = token
            headers["Authorization"] = f"Bearer {token}"
        return self.session.get(url, headers=headers, timeout=self.timeout, stream=True)

    def _read(self, response: requests.Response, limit: int, what: str) -> bytes:
        try:
            return read_within(response, limit)
        except BodyTooLarge as exc:
            raise RegistryError(f"{what}: {exc}") from None

    def _fetch(self, registry: str, path: str, scope: str, what: str, limit: int,
               accept: str = ACCEPT) -> Tuple[requests.Response, bytes]:
        url = f"{_endpoint(registry, self.insecure)}/v2/{path}"
        try:
            response = self._get(url, registry, scope, accept)
            body = self._read(response, limit, what) if response.status_code == 200 else b""
        except requests.RequestException as exc:
            raise RegistryError(f"{what}: cannot reach {registry} ({type(exc).__name__})") from None
        return response, body

    # -- reads ----------------------------------------------------------------------------------

    def manifest(self, registry: str, repository: str, reference: str) -> Manifest:
        """The manifest (or index) of ``repository`` at a tag or digest; a digest is verified."""
        what = f"{registry}/{repository}{'@' if is_digest(reference) else ':'}{reference}"
        response, body = self._fetch(registry, f"{repository}/manifests/{reference}",
                                     f"repository:{repository}:pull", what, self.max_manifest_bytes)
        if response.status_code == 404:
            raise RegistryError(f"{what}: not found in {registry} (HTTP 404)")
        if response.status_code != 200:
            raise RegistryError(f"{what}: {registry} answered HTTP {response.status_code}")
        computed = "sha256:" + hashlib.sha256(body).hexdigest()
        if is_digest(reference) and computed != reference:
            raise RegistryError(f"{what}: the registry returned content whose digest is {computed}")
        try:
            document = json.loads(body)
        except ValueError:
            raise RegistryError(f"{what}: the manifest is not JSON") from None
        if not isinstance(document, dict):
            raise RegistryError(f"{what}: the manifest is not a JSON object")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip() or document.get("mediaType") or ""
        digest = reference if is_digest(reference) else response.headers.get("Docker-Content-Digest") or computed
        return Manifest(digest=digest, media_type=media_type, body=document)

    def blob(self, registry: str, repository: str, digest: str) -> bytes:
        """A small blob (image config, attestation layer), verified against its digest."""
        what = f"{registry}/{repository}@{digest}"
        response, body = self._fetch(registry, f"{repository}/blobs/{digest}", f"repository:{repository}:pull",
                                     what, self.max_blob_bytes, accept="*/*")
        if response.status_code != 200:
            raise RegistryError(f"{what}: {registry} answered HTTP {response.status_code} for the blob")
        if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise RegistryError(f"{what}: the blob does not match its digest")
        return body

    def referrers(self, registry: str, repository: str, digest: str) -> List[Dict[str, Any]]:
        """Descriptors of the artifacts referring to ``digest`` (OCI referrers API, else the
        ``sha256-<hex>`` fallback tag of OCI Distribution 1.1)."""
        what = f"{registry}/{repository}@{digest} referrers"
        response, body = self._fetch(registry, f"{repository}/referrers/{digest}", f"repository:{repository}:pull",
                                     what, self.max_manifest_bytes, accept=OCI_INDEX)
        if response.status_code == 200:
            try:
                index = json.loads(body)
            except ValueError:
                raise RegistryError(f"{what}: the referrers index is not JSON") from None
        elif response.status_code in (404, 405):
            try:
                index = self.manifest(registry, repository, digest.replace(":", "-")).body
            except RegistryError:
                return []
        else:
            raise RegistryError(f"{what}: {registry} answered HTTP {response.status_code}")
        manifests = index.get("manifests") if isinstance(index, dict) else None
        return [m for m in manifests or [] if isinstance(m, dict) and is_digest(m.get("digest", ""))]

    def _paged(self, registry: str, path: str, scope: str, key: str, what: str,
               page_size: int, last: Optional[str]) -> Tuple[List[str], Optional[str]]:
        query = f"?n={page_size}" + (f"&last={requests.utils.quote(last, safe='')}" if last else "")
        response, body = self._fetch(registry, path + query, scope, what, self.max_manifest_bytes,
                                     accept="application/json")
        if response.status_code == 404:
            return [], None
        if response.status_code != 200:
            raise RegistryError(f"{what}: {registry} answered HTTP {response.status_code}")
        try:
            items = [str(v) for v in (json.loads(body).get(key) or [])]
        except (ValueError, AttributeError):
            raise RegistryError(f"{what}: the answer is not the expected JSON") from None
        more = "next" in response.headers.get("Link", "") and items
        return items, items[-1] if more else None

    def catalog(self, registry: str, last: Optional[str] = None, page_size: int = 100) -> Tuple[List[str], Optional[str]]:
        """One page of repository names after ``last``, and the cursor of the next page (None: done)."""
        return self._paged(registry, "_catalog", "registry:catalog:*", "repositories", f"{registry} catalog",
                           page_size, last)

    def tags(self, registry: str, repository: str, last: Optional[str] = None,
             page_size: int = 100) -> Tuple[List[str], Optional[str]]:
        return self._paged(registry, f"{repository}/tags/list", f"repository:{repository}:pull", "tags",
                           f"{registry}/{repository} tags", page_size, last)

    def resolve(self, reference: str) -> Resolved:
        try:
            name = parse_reference(reference)
        except InvalidReference as exc:
            raise RegistryError(str(exc)) from None
        manifest = self.manifest(name.registry, name.repository, name.digest or name.tag or "latest")
        platforms = []
        if manifest.is_index:
            for entry in manifest.body.get("manifests") or []:
                platform = entry.get("platform") or {}
                if not is_digest(entry.get("digest", "")) or platform.get("os") == "unknown":
                    continue  # BuildKit attestation manifests, not images
                platforms.append(Platform(entry["digest"], platform.get("os"), platform.get("architecture"),
                                          platform.get("variant")))
        return Resolved(reference=reference, digest=manifest.digest, media_type=manifest.media_type,
                        platforms=platforms)
