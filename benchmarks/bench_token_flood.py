"""Forged-token flood against a trusted issuer that hangs (issue 9, "Why" 4).

Starts ``imagetrail serve`` (SQLite) trusting one Azure DevOps organisation whose issuer is a
local TCP server that accepts connections and never answers. Then sends ``--tokens`` concurrent
requests, each with a forged job token (random key id, signed by a key the issuer never
published) naming that issuer, and meanwhile polls ``/healthz`` and a read with an API key.
Records each forged request's status and latency, the number of connections the server opened
to the issuer, and the latency of the other requests. Writes benchmarks/results/bench_token_flood.md.

    python3 benchmarks/bench_token_flood.py [--tokens 64] [--deadline 15]

``IMAGETRAIL_BENCH_SRC=DIR`` runs the server from another source tree (a before/after run; the
tree before issue 9 took minutes at full size).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

import jwt  # noqa: E402

from imagetrail.auth.api_keys import create_key  # noqa: E402
from imagetrail.store.db import make_engine, make_sessionmaker, transaction  # noqa: E402
from imagetrail.store.migrate import upgrade  # noqa: E402
from tests.support.live_server import server_process  # noqa: E402
from tests.support.oidc_provider import new_key  # noqa: E402

ORG_ID = "6a1c7f52-0d1e-4e8b-9a55-3f0c2b7d9e11"
RESULTS = ROOT / "benchmarks" / "results" / "bench_token_flood.md"


class HangingIssuer:
    """Accepts TCP connections on 127.0.0.1 and never answers; counts them."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: List[socket.socket] = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)  # held open, never answered

    def close(self) -> None:
        self.stopped = True
        self.listener.close()
        for connection in self.connections:
            connection.close()


def get(url: str, headers: Dict[str, str], timeout: float) -> Tuple[int, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError:
        status = 0  # no answer within the timeout
    return status, time.monotonic() - started


def percentile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--deadline", type=float, default=15.0, help="each forged request must be answered within")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()

    issuer = HangingIssuer()
    issuer_url = f"http://127.0.0.1:{issuer.port}/ado"
    workdir = tempfile.mkdtemp(prefix="bench-token-flood-")
    database_url = f"sqlite:///{workdir}/imagetrail.db"
    engine = make_engine(database_url)
    upgrade(engine)
    with transaction(make_sessionmaker(engine)) as session:
        read_key = create_key(session, "*", "read").key
    engine.dispose()
    env = {"IMAGETRAIL_TRUST_AZURE_DEVOPS_ORGS": ORG_ID, "IMAGETRAIL_AZURE_DEVOPS_ISSUER_BASE": issuer_url}
    if os.environ.get("IMAGETRAIL_BENCH_SRC"):
        env["PYTHONPATH"] = os.environ["IMAGETRAIL_BENCH_SRC"]

    forger = new_key("forger")
    now = int(time.time())
    tokens = [jwt.encode({"iss": f"{issuer_url}/{ORG_ID}", "aud": "api://AzureADTokenExchange",
                          "sub": "p://contoso/Web/web-ci", "iat": now, "exp": now + 3600},
                         forger, algorithm="RS256", headers={"kid": uuid.uuid4().hex}) for _ in range(args.tokens)]

    with server_process(database_url, env) as (base, _process):
        others: Dict[str, List[float]] = {"GET /healthz": [], "GET /v1/coverage (API key)": []}
        other_failures = 0
        flood_done = threading.Event()

        def poll() -> None:
            nonlocal other_failures
            while not flood_done.is_set():
                for name, url, headers in (("GET /healthz", base + "/healthz", {}),
                                           ("GET /v1/coverage (API key)", base + "/v1/coverage",
                                            {"Authorization": f"Bearer {read_key}"})):
                    status, elapsed = get(url, headers, timeout=args.deadline * 2)
                    others[name].append(elapsed)
                    other_failures += status != 200
                time.sleep(0.05)

        poller = threading.Thread(target=poll, daemon=True)
        started = time.monotonic()
        with ThreadPoolExecutor(args.tokens) as pool:
            poller.start()
            flood = list(pool.map(lambda token: get(base + "/v1/images?repository=x",
                                                    {"Authorization": f"Bearer {token}"}, args.deadline * 4),
                                  tokens))
        wall = time.monotonic() - started
        flood_done.set()
        poller.join()
    issuer.close()

    load = os.getloadavg()[0]
    statuses: Dict[int, int] = {}
    for status, _ in flood:
        statuses[status] = statuses.get(status, 0) + 1
    latencies = [elapsed for _, elapsed in flood]
    within = sum(1 for status, elapsed in flood if status in (401, 503) and elapsed <= args.deadline)
    rows = [
        ("forged requests", f"{args.tokens} concurrent"),
        ("answers", ", ".join(f"{count} x {status or 'no answer'}" for status, count in sorted(statuses.items()))),
        (f"answered 401/503 within {args.deadline:.0f} s", f"{within} of {args.tokens}"),
        ("forged request latency p50 / p99 / max", f"{statistics.median(latencies):.2f} s / "
                                                   f"{percentile(latencies, 0.99):.2f} s / {max(latencies):.2f} s"),
        ("connections the server opened to the issuer", str(len(issuer.connections))),
        ("flood wall time", f"{wall:.2f} s"),
    ]
    for name, values in others.items():
        rows.append((f"{name} during the flood: n, p50 / max",
                     f"{len(values)}, {statistics.median(values) * 1000:.0f} ms / {max(values) * 1000:.0f} ms"
                     if values else "none completed"))
    rows.append(("other requests not answered 200", str(other_failures)))

    table = "\n".join(["| measure | value |", "|---|---|"] + [f"| {m} | {v} |" for m, v in rows])
    source = os.environ.get("IMAGETRAIL_BENCH_SRC") or "this tree"
    text = (f"# bench_token_flood: forged tokens naming a trusted issuer that hangs\n\n"
            f"`imagetrail serve` (1 worker, SQLite, server from {source}) trusting one Azure DevOps "
            f"organisation whose issuer accepts connections and never answers; {args.tokens} concurrent "
            f"requests with forged job tokens (random key ids), while `/healthz` and an API-key read are "
            f"polled. Default settings (issuer timeout 3 s, wait 2 s, failures remembered 30 s).\n\n"
            f"{table}\n\nTarget: every forged request answered 401 or 503 within {args.deadline:.0f} s, at most "
            f"a few outbound fetches, other requests unaffected.\n"
            f"Load average over the last minute when writing: {load:.1f} on {os.cpu_count()} cores.\n"
            f"Measured {time.strftime('%Y-%m-%d', time.gmtime())}.\n")
    Path(args.output).write_text(text)
    print(text)
    print(json.dumps({"within_deadline": within, "tokens": args.tokens, "issuer_connections": len(issuer.connections)}))
    return 0 if within == args.tokens else 1


if __name__ == "__main__":
    sys.exit(main())
