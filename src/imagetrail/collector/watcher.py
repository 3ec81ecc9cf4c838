"""The detached watcher started by pre-job: records every push of the job as it happens.

The daemon keeps only its last 256 events, and a pushed image may be deleted or re-tagged
later in the job, so the watcher streams ``/events`` from the job start (buffered events
first, then live ones) and resolves each push's digest at once. Each record is one JSON
line appended to the job's pushes file. It stops on SIGTERM (post-job), when the job's
temp directory disappears (the agent cleans it after the job), or after ``--max-seconds``.
While it runs it touches the job's shared-engine registration (``--registration``): the
heartbeat that tells other jobs this one is still running.

Started by ``command()`` (isolated, with the collector's own path); its stdout and stderr go
to the job's watcher log.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, List, Optional, Sequence, Set, Tuple

from imagetrail.collector import all_tags, shared_engine
from imagetrail.collector.docker_endpoint import EndpointError, resolve_endpoint
from imagetrail.collector.docker_events import DockerUnavailable
from imagetrail.collector.events import PushEvent
from imagetrail.collector.resolve import resolve
from imagetrail.collector.state import append_line

if TYPE_CHECKING:
    from imagetrail.collector.docker_client import DockerApi

# Longer than any hosted job may run; on self-hosted agents the job's temp dir is removed.
DEFAULT_MAX_SECONDS = 48 * 3600
HOUSEKEEPING_SECONDS = shared_engine.HEARTBEAT_SECONDS


def _log(message: str) -> None:
    print(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), message, flush=True)


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _housekeeping(directory: str, registration: Optional[str], interval: float) -> None:
    def loop() -> None:
        while True:
            time.sleep(interval)
            if not os.path.isdir(directory):
                _log("the job's temp directory is gone; stopping")
                os._exit(0)
            if registration:
                shared_engine.heartbeat(registration)

    threading.Thread(target=loop, daemon=True).start()


def _tagged(api: "DockerApi", event: PushEvent) -> List[PushEvent]:
    """The event itself, or for ``push --all-tags`` one event per tag the repository has now
    (the watcher sees the push as it happens)."""
    if not all_tags.names_repository_only(event):
        return [event]
    try:
        images = api.repository_images(event.reference)
    except DockerUnavailable as exc:
        _log(f"push {event.reference} (all tags): {exc}")
        return [event]
    return all_tags.expand(event, images, None) or [event]


def watch(pushes_path: str, since_ns: int) -> None:
    endpoint = resolve_endpoint(os.environ)
    seen: Set[Tuple[str, int]] = set()
    resume_ns, backoff = since_ns, 1.0
    from imagetrail.collector.docker_client import DockerApi

    while True:
        try:
            api = DockerApi(endpoint, os.environ, timeout=30.0)
            stream = api.stream_push_events(resume_ns)
            append_line(pushes_path, {"type": "watching", "pid": os.getpid(), "since": resume_ns,
                                      "at": time.time_ns()})
            _log(f"watching push events of {endpoint.host} since {resume_ns}")
            for raw in stream:
                event = PushEvent.from_event(raw)
                if event is None or event.time_ns < since_ns or event.key in seen:
                    continue
                seen.add(event.key)
                for pushed in _tagged(api, event):
                    resolution = resolve(api, pushed)
                    append_line(pushes_path, {"type": "push", "event": pushed.to_json(),
                                              "resolution": resolution.to_json(), "at": time.time_ns()})
                    _log(f"push {pushed.reference} -> {resolution.digest or resolution.error}")
                resume_ns, backoff = max(resume_ns, event.time_ns), 1.0
            _log("the daemon closed the event stream")
        except DockerUnavailable as exc:
            _log(f"Docker is not reachable: {exc}")
        except (OSError, ValueError) as exc:
            _log(f"event stream failed: {type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a watcher must outlive odd daemon answers
            _log(f"event stream failed: {type(exc).__name__}: {exc}")
        time.sleep(backoff)
        backoff = min(backoff * 2, 30.0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="imagetrail-watcher")
    parser.add_argument("--pushes", required=True, help="JSON-lines file the push records are appended to")
    parser.add_argument("--since", required=True, type=int, help="job start, nanoseconds since the epoch")
    parser.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS)
    parser.add_argument("--registration", help="this job's shared-engine registration (heartbeat)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    timer = threading.Timer(args.max_seconds, os._exit, (0,))
    timer.daemon = True
    timer.start()
    directory = os.path.dirname(os.path.abspath(args.pushes))
    _housekeeping(directory, args.registration, HOUSEKEEPING_SECONDS)
    try:
        watch(args.pushes, args.since)
    except EndpointError as exc:
        _log(f"cannot tell which Docker daemon to watch: {exc}")
    except SystemExit:
        _log("stopped")
    return 0


def collector_path() -> List[str]:
    """The watcher imports exactly what this process imports from: this copy of imagetrail (the
    task's, not one installed in the job's Python) and its wheels first, never the working directory."""
    import imagetrail

    root = os.path.dirname(os.path.dirname(os.path.abspath(imagetrail.__file__)))
    rest = [entry for entry in sys.path if entry not in ("", ".", os.getcwd(), root)]
    return [root] + rest


# Isolated like the collector itself (see shim/collector-shim.js): no PYTHON* variables, no user
# site, no site-packages .pth files, not the working directory (-c puts '' first); the whole path
# is given.
_START = ("import sys; sys.path[:] = sys.argv.pop(1).split({sep!r}); "
          "from imagetrail.collector.watcher import main; raise SystemExit(main())")


def command(pushes_path: str, since_ns: int, registration: Optional[str] = None) -> List[str]:
    args = [sys.executable, "-E", "-s", "-S", "-c", _START.format(sep=os.pathsep),
            os.pathsep.join(collector_path()), "--pushes", pushes_path, "--since", str(since_ns)]
    return args + (["--registration", registration] if registration else [])


if __name__ == "__main__":
    raise SystemExit(main())
