"""Helpers for the collector tests: run the real CLI in a subprocess, local HTTP servers,
tiny images built with ``docker import``."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from tests.support.podman import podman_env

SRC = str(Path(__file__).resolve().parents[2] / "src")
SCHEMA = Path(SRC) / "imagetrail" / "schemas" / "report-v1.schema.json"

ACCESS_TOKEN = "azp-access-token-" + uuid.uuid4().hex
API_KEY = "it-api-key-" + uuid.uuid4().hex


def azure_env(tmp_path: Path, **extra: str) -> Dict[str, str]:
    """A plausible Azure Pipelines job environment, with a fresh agent temp directory and its
    own directory where jobs on one engine register (IMAGETRAIL_ENGINE_DIR): other jobs on this
    machine's shared engine must not show up in the test. Pass IMAGETRAIL_ENGINE_DIR to put
    several jobs on one host. The agent's tools directory (where the host's delivery breaker
    lives) is the test's own too: pass AGENT_TOOLSDIRECTORY to share one between jobs."""
    temp = tmp_path / "agent-temp"
    temp.mkdir(parents=True, exist_ok=True)
    engines = Path(extra.get("IMAGETRAIL_ENGINE_DIR") or tmp_path / "engines")
    tools = tmp_path / "agent-tools"
    tools.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("IMAGETRAIL_", "SYSTEM_", "BUILD_", "AGENT_", "RELEASE_", "GITHUB_",
                                "TF_BUILD"))}
    env.update({
        "PYTHONPATH": SRC,
        "TF_BUILD": "True",
        "AGENT_TEMPDIRECTORY": str(temp),
        "AGENT_TOOLSDIRECTORY": str(tools),
        "SYSTEM_COLLECTIONURI": "https://dev.azure.com/contoso/",
        "SYSTEM_COLLECTIONID": "c0ffee00-0000-4000-8000-000000000001",
        "SYSTEM_TEAMPROJECT": "Shop",
        "SYSTEM_TEAMPROJECTID": "9d1f0000-0000-4000-8000-000000000002",
        "SYSTEM_DEFINITIONID": "17",
        "BUILD_DEFINITIONNAME": "shop-ci",
        "BUILD_BUILDID": str(uuid.uuid4().int % 10**8),
        "BUILD_BUILDNUMBER": "20260101.3",
        "BUILD_REASON": "IndividualCI",
        "SYSTEM_JOBID": str(uuid.uuid4()),
        "SYSTEM_JOBDISPLAYNAME": "Build image",
        "SYSTEM_JOBATTEMPT": "1",
        "SYSTEM_STAGEDISPLAYNAME": "Build",
        "BUILD_REPOSITORY_ID": "repo-1",
        "BUILD_REPOSITORY_NAME": "shop",
        "BUILD_REPOSITORY_URI": "https://dev.azure.com/contoso/Shop/_git/shop",
        "BUILD_REPOSITORY_PROVIDER": "TfsGit",
        "BUILD_SOURCEBRANCH": "refs/heads/main",
        "BUILD_SOURCEVERSION": "3f2c1e0d9b8a7f6e5d4c3b2a1908f7e6d5c4b3a2",
        "BUILD_REQUESTEDFOR": "Ada Lovelace",
        "BUILD_REQUESTEDFORID": "ada-id",
        "BUILD_REQUESTEDFOREMAIL": "ada@example.com",
        "AGENT_NAME": "Hosted Agent",
        "AGENT_OS": "Linux",
        "SYSTEM_HOSTTYPE": "build",
        "SYSTEM_ACCESSTOKEN": ACCESS_TOKEN,
        "IMAGETRAIL_DEADLINE_SECONDS": "10",
        "IMAGETRAIL_ENGINE_DIR": str(engines),
    })
    env.update(podman_env(tmp_path / "podman"))  # this job's own podman event log, not the machine's
    env.update(extra)
    return env


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    elapsed: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def warnings(self) -> List[str]:
        return [line for line in self.output.splitlines()
                if "task.logissue type=warning" in line or line.startswith("::warning::")
                or ": warning: " in line]


def collect(phase: str, env: Dict[str, str], *args: str, timeout: float = 60) -> Run:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "imagetrail", "collect", phase, *args], env=env,
                          capture_output=True, text=True, timeout=timeout)
    return Run(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def docker(*args: str, check: bool = True, input: Optional[bytes] = None) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, input=input, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode(errors="replace").strip()


def import_image(reference: str, labels: Optional[Dict[str, str]] = None) -> str:
    """A one-file image with unique content; returns its image id."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        payload = uuid.uuid4().hex.encode()
        info = tarfile.TarInfo("id.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    changes: List[str] = []
    for key, value in (labels or {}).items():
        changes += ["--change", f"LABEL {key}={json.dumps(value)}"]
    docker("import", *changes, "-", reference, input=buffer.getvalue())
    return docker("image", "inspect", "--format", "{{.Id}}", reference)


def push(reference: str) -> str:
    """Pushes and returns the digest docker push printed."""
    out = docker("push", reference)
    for line in out.splitlines():
        if "digest: sha256:" in line:
            return line.split("digest: ", 1)[1].split()[0]
    raise AssertionError(f"no digest in docker push output: {out}")


def validate(body: dict) -> None:
    import jsonschema

    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()),
                                    format_checker=jsonschema.FormatChecker()).validate(body)


# --- local HTTP servers ---------------------------------------------------------------

@dataclass
class Seen:
    method: str
    path: str
    headers: Dict[str, str]
    body: bytes


Responder = Callable[[Seen], Tuple[int, Dict[str, str], bytes]]


@dataclass
class HttpStub:
    responder: Responder
    requests: List[Seen] = field(default_factory=list)
    server: Optional[ThreadingHTTPServer] = None
    tls: Optional[Tuple[str, str]] = None  # (certificate file, key file) to serve https

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    def __enter__(self) -> "HttpStub":
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                            self.rfile.read(length) if length else b"")
                stub.requests.append(seen)
                status, headers, body = stub.responder(seen)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if self.tls:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()


def json_reply(status: int, data: object,
               headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(data).encode()


def entra_stand_in(tenant: str, accepts: Callable[[Dict[str, List[str]]], bool], token: str,
                   refusal: str) -> Responder:
    """Microsoft Entra ID for one tenant, as msal uses it: the OpenID discovery document, then the
    token endpoint ``/{tenant}/oauth2/v2.0/token``, answering ``token`` when ``accepts(form)``, else
    ``invalid_client`` with ``refusal`` as its description."""
    from urllib.parse import parse_qs, urlsplit

    def reply(seen: Seen) -> Tuple[int, Dict[str, str], bytes]:
        path = urlsplit(seen.path).path
        if seen.method == "GET" and path == f"/{tenant}/v2.0/.well-known/openid-configuration":
            host = seen.headers["host"]
            return json_reply(200, {"token_endpoint": f"https://{host}/{tenant}/oauth2/v2.0/token",
                                    "authorization_endpoint": f"https://{host}/{tenant}/oauth2/v2.0/authorize",
                                    "issuer": f"https://{host}/{tenant}/v2.0"})
        if seen.method == "POST" and path == f"/{tenant}/oauth2/v2.0/token":
            if accepts(parse_qs(seen.body.decode())):
                return json_reply(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})
            return json_reply(400, {"error": "invalid_client", "error_description": refusal})
        return json_reply(404, {"error": "not_found"})

    return reply


def self_signed_certificate(directory: Path) -> Tuple[str, str]:
    """A certificate for 127.0.0.1 (test side only), to serve https like a real authority."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


# --- jobs, watchers and engines ---------------------------------------------------------

def wait_for(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    limit = time.monotonic() + timeout
    while not check():
        if time.monotonic() > limit:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def job_record(env: Dict[str, str]) -> dict:
    [record] = (Path(env["AGENT_TEMPDIRECTORY"]) / "imagetrail").glob("job-*[0-9a-f].json")
    return json.loads(record.read_text())


def watcher_pushes(env: Dict[str, str]) -> List[dict]:
    files = list((Path(env["AGENT_TEMPDIRECTORY"]) / "imagetrail").glob("job-*.pushes.jsonl"))
    lines = files[0].read_text().splitlines() if files else []
    return [json.loads(line)["event"] for line in lines if '"type":"push"' in line]


def process_gone(pid: int) -> bool:
    """Gone or a zombie (a killed watcher whose new parent has not reaped it yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def kill_watcher(env: Dict[str, str]) -> int:
    """The job's watcher dies (as if the agent killed it): post-job must fall back to the ring buffer."""
    import signal

    pid = job_record(env)["watcherPid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: process_gone(pid), 10, f"watcher {pid} to die")
    return pid


def engine_registrations(engines: Path) -> List[Path]:
    return sorted(engines.glob("*/job-*.json"))


class QuietEngine:
    """A Docker Engine API endpoint on a Unix socket that holds no events: for tests whose subject
    is not Docker (the real engine is shared with concurrent jobs, whose pushes would enter the
    report). Checks each request against the documented calls: ``GET /events`` with since, until
    and the push filter; ``GET /info``."""

    def __init__(self, path: Path, engine_id: str = "QUIET:ENGINE") -> None:
        self.path = str(path)
        self.engine_id = engine_id
        self.requests: List[str] = []
        self.errors: List[str] = []
        self.server = None

    @property
    def host(self) -> str:
        return f"unix://{self.path}"

    def __enter__(self) -> "QuietEngine":
        import socketserver
        from urllib.parse import parse_qs, urlsplit

        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                engine.requests.append(self.path)
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                if url.path == "/events":
                    filters = json.loads(query.get("filters", ["{}"])[0])
                    if not (query.get("since") and query.get("until") and filters == {"type": ["image"],
                                                                                       "event": ["push"]}):
                        engine.errors.append(f"unexpected events query: {self.path}")
                    self._reply(b"")
                elif url.path == "/info":
                    self._reply(json.dumps({"ID": engine.engine_id}).encode())
                else:
                    engine.errors.append(f"unexpected call: {self.path}")
                    self.send_error(404)

            def _reply(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def address_string(self) -> str:
                return "unix"

            def log_message(self, *args: object) -> None:
                pass

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self.server = Server(self.path, Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class TcpToUnix:
    """A TCP listener on 127.0.0.1 that forwards every connection to a Unix socket (the real
    engine's): the daemon as a ``tcp://`` endpoint, so the docker-py transport is the one used.
    Remembers the request line of each connection."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.request_lines: List[str] = []
        self._listener: Optional[object] = None
        self._sockets: List[object] = []
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        return f"tcp://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> "TcpToUnix":
        import socket

        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(32)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.socket_path)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source, target, requests: bool) -> None:
        import socket

        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if requests:
                    # Keep-alive connections carry several requests; note each request line.
                    for line in data.split(b"\r\n"):
                        method = line.split(b" ", 1)[0]
                        if method in (b"GET", b"POST", b"HEAD") and line.endswith(b"HTTP/1.1"):
                            self.request_lines.append(line.decode(errors="replace"))
                target.sendall(data)
        except OSError:
            pass
        finally:
            try:
                target.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def __exit__(self, *exc: object) -> None:
        import socket

        # shutdown() first: close() alone leaves a listener blocked in accept() listening (Linux keeps the
        # socket while a thread waits on it), and it would forward the next stray connection to the engine.
        for sock in [self._listener, *self._sockets]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()
