"""Which Docker daemon the job used, resolved the way the docker CLI resolves it.

Order (docker/cli ``resolveContextName``): ``DOCKER_HOST`` wins, then ``DOCKER_CONTEXT``,
then ``currentContext`` in ``$DOCKER_CONFIG/config.json`` (default ``~/.docker``), then the
platform default. A named context's endpoint is read from
``$DOCKER_CONFIG/contexts/meta/<sha256 of the name>/meta.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Mapping, Optional

DEFAULT_UNIX_HOST = "unix:///var/run/docker.sock"
DEFAULT_WINDOWS_HOST = "npipe:////./pipe/docker_engine"


class EndpointError(Exception):
    pass


@dataclass(frozen=True)
class DockerEndpoint:
    host: str
    source: str  # how it was chosen, for messages: "DOCKER_HOST", "context 'x'", "default"
    context: Optional[str] = None  # the docker context name, when the host came from one
    config_dir: Optional[str] = None

    @property
    def unix_socket(self) -> Optional[str]:
        """The socket path when the daemon is reached through a Unix socket, else None."""
        if self.host.startswith("unix://"):
            return self.host[len("unix://"):] or None
        return None


def docker_config_dir(env: Mapping[str, str]) -> str:
    configured = env.get("DOCKER_CONFIG")
    if configured:
        return configured
    home = env.get("HOME") or env.get("USERPROFILE") or os.path.expanduser("~")
    return os.path.join(home, ".docker")


def _current_context(config_dir: str) -> Optional[str]:
    try:
        with open(os.path.join(config_dir, "config.json"), encoding="utf-8") as handle:
            config = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise EndpointError(f"cannot read {os.path.join(config_dir, 'config.json')}: {exc}") from None
    name = config.get("currentContext") if isinstance(config, dict) else None
    return name if isinstance(name, str) and name else None


def _context_host(config_dir: str, name: str) -> str:
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()
    path = os.path.join(config_dir, "contexts", "meta", digest, "meta.json")
    try:
        with open(path, encoding="utf-8") as handle:
            meta = json.load(handle)
        host = meta["Endpoints"]["docker"]["Host"]
    except FileNotFoundError:
        raise EndpointError(f"docker context {name!r} does not exist (no {path})") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        message = f"docker context {name!r} has no usable docker endpoint in {path} ({exc!r})"
        raise EndpointError(message) from None
    if not isinstance(host, str) or not host:
        raise EndpointError(f"docker context {name!r} has an empty docker endpoint")
    return host


def resolve_endpoint(env: Mapping[str, str], windows: bool = os.name == "nt") -> DockerEndpoint:
    config_dir = docker_config_dir(env)
    host = (env.get("DOCKER_HOST") or "").strip()
    if host:
        return DockerEndpoint(host=host, source="DOCKER_HOST", config_dir=config_dir)
    name = (env.get("DOCKER_CONTEXT") or "").strip() or _current_context(config_dir)
    if name and name != "default":
        return DockerEndpoint(
            host=_context_host(config_dir, name), source=f"docker context {name!r}", context=name,
            config_dir=config_dir,
        )
    return DockerEndpoint(
        host=DEFAULT_WINDOWS_HOST if windows else DEFAULT_UNIX_HOST, source="default", config_dir=config_dir,
    )
