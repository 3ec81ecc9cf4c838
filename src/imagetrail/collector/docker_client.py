"""docker-py behind the few calls the collector needs; imported only when needed.

docker-py brings what a stdlib client would have to re-implement: TLS and ssh transports,
Windows named pipes, docker contexts with their TLS material, and registry credentials
from ``config.json`` / credential helpers for ``GET /distribution/{name}/json``.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Mapping, Optional

from imagetrail.collector.docker_endpoint import DockerEndpoint
from imagetrail.collector.docker_events import DockerUnavailable, docker_time
from imagetrail.collector.events import REFERENCE_ACTIONS


class DockerApi:
    def __init__(self, endpoint: DockerEndpoint, env: Mapping[str, str], timeout: Optional[float]) -> None:
        try:
            import docker
            from docker.errors import DockerException
        except ImportError as exc:
            message = f"docker-py is not installed ({exc}); cannot resolve pushed digests"
            raise DockerUnavailable(message) from None
        self._errors = docker.errors
        kwargs: Dict[str, Any] = {"timeout": timeout, "version": "auto"}
        host = endpoint.host
        try:
            if endpoint.context:
                context = docker.ContextAPI.get_context(endpoint.context)
                if context is None:
                    raise DockerUnavailable(f"docker context {endpoint.context!r} not found")
                host = context.Host
                if context.TLSConfig:
                    kwargs["tls"] = context.TLSConfig
            elif host.startswith("tcp://") and (env.get("DOCKER_TLS_VERIFY") or env.get("DOCKER_CERT_PATH")):
                tls = docker.utils.kwargs_from_env(environment=dict(env)).get("tls")
                if tls:
                    kwargs["tls"] = tls
            if host.startswith("ssh://"):
                kwargs["use_ssh_client"] = True  # the system ssh client: paramiko is not a pure wheel
            self.api = docker.APIClient(base_url=host, **kwargs)
        except DockerUnavailable:
            raise
        except (DockerException, OSError, ValueError) as exc:
            message = f"cannot reach the Docker daemon at {host} ({endpoint.source}): {exc}"
            raise DockerUnavailable(message) from None

    def push_events(self, since_ns: int, until_ns: int) -> List[Dict[str, Any]]:
        try:
            return list(self.api.events(since=docker_time(since_ns), until=docker_time(until_ns),
                                        filters=_filters(), decode=True))
        except (self._errors.DockerException, OSError, ValueError) as exc:
            raise DockerUnavailable(f"cannot read events from the Docker daemon: {exc}") from None

    def reference_events(self, since_ns: int, until_ns: int) -> List[Dict[str, Any]]:
        """The image events that change what a reference points to (tag, pull, load) and pushes."""
        filters = {"type": ["image"], "event": list(REFERENCE_ACTIONS)}
        try:
            return list(self.api.events(since=docker_time(since_ns), until=docker_time(until_ns),
                                        filters=filters, decode=True))
        except (self._errors.DockerException, OSError, ValueError) as exc:
            raise DockerUnavailable(f"cannot read events from the Docker daemon: {exc}") from None

    def engine_id(self) -> str:
        try:
            engine_id = (self.api.info() or {}).get("ID")
        except (self._errors.DockerException, OSError, ValueError) as exc:
            raise DockerUnavailable(f"cannot ask the Docker daemon for its ID: {exc}") from None
        if not isinstance(engine_id, str) or not engine_id.strip():
            raise DockerUnavailable("the Docker daemon sent no engine ID in GET /info")
        return engine_id.strip()[:200]

    def stream_push_events(self, since_ns: int) -> Iterator[Dict[str, Any]]:
        """Events since ``since_ns``, the buffered ones first, then live ones as they happen."""
        return self.api.events(since=docker_time(since_ns), filters=_filters(), decode=True)

    def inspect_image(self, reference: str) -> Optional[Dict[str, Any]]:
        try:
            return self.api.inspect_image(reference)
        except self._errors.NotFound:
            return None

    def repository_images(self, repository: str) -> List[Dict[str, Any]]:
        """The engine's images with a tag in ``repository`` (``GET /images/json``, reference filter)."""
        try:
            return list(self.api.images(name=repository) or [])
        except (self._errors.DockerException, OSError, ValueError) as exc:
            raise DockerUnavailable(f"cannot list the images of {repository}: {exc}") from None

    def distribution(self, reference: str) -> Dict[str, Any]:
        return self.api.inspect_distribution(reference)

    def close(self) -> None:
        try:
            self.api.close()
        except Exception:  # noqa: BLE001 - closing must never fail the job
            pass


def _filters() -> Dict[str, List[str]]:
    return {"type": ["image"], "event": ["push"]}
