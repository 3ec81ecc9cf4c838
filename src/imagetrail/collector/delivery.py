"""``POST {IMAGETRAIL_URL}/v1/reports`` with a few quick retries, inside a short budget.

The report is safe once kept with the run (see ``fallback``), so delivery is not worth holding
the agent for: at most ``MAX_ATTEMPTS`` attempts within ``DELIVERY_BUDGET_SECONDS`` (and the
step's deadline), each with short connect and read timeouts, so that a backend that is down
costs the first job about 10 s and not the whole deadline.

Retried: connection errors, timeouts, 429 (honouring Retry-After when it fits the budget)
and 5xx, with exponential backoff and full jitter; these failures are an outage
(``DeliveryError.outage``) and open the host's breaker. Not retried: other 4xx - the server's
message is passed on. Success: 200 (already received), 201, 202.
"""

from __future__ import annotations

import json
import random
import time
from email.utils import parsedate_to_datetime
from typing import Any, Dict, Optional

from imagetrail.collector.deadline import Deadline

SUCCESS = (200, 201, 202)
RESERVE_SECONDS = 1.5  # kept for writing and attaching the report if delivery fails
DELIVERY_BUDGET_SECONDS = 8.0  # all attempts together; with the job token, the first job adds <= ~10 s
MAX_ATTEMPTS = 3
CONNECT_CAP = 2.0  # a reachable backend accepts a connection in milliseconds
READ_CAP = 5.0  # ingest answers after one commit; far less than this when the backend is healthy
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 2.0


class DeliveryError(Exception):
    def __init__(self, message: str, outage: bool = False, cause: str = "") -> None:
        super().__init__(message)
        self.outage = outage  # the backend is down or overloaded (not: it refused this report)
        self.cause = cause  # a short phrase without URL or server text, for the host's breaker state


def _message(response: Any) -> str:
    try:
        detail = response.json()
        if isinstance(detail, dict) and "detail" in detail:
            detail = detail["detail"]
        text = detail if isinstance(detail, str) else json.dumps(detail)
    except ValueError:
        text = response.text or ""
    text = " ".join(str(text).split())
    return text[:300] + ("\u2026" if len(text) > 300 else "")


def retry_after_seconds(value: Optional[str]) -> Optional[float]:
    """Retry-After is delta-seconds or an HTTP date (RFC 9110, section 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def deliver(url: str, token: str, body: Dict[str, Any], deadline: Deadline) -> Dict[str, Any]:
    import requests

    endpoint = url.rstrip("/") + "/v1/reports"
    data = json.dumps(body, separators=(",", ":")).encode("utf-8")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               "Accept": "application/json", "User-Agent": "imagetrail-collector"}
    backoff, attempt, last, cause = FIRST_BACKOFF, 0, "no attempt was made", "no time to try"
    budget_end = time.monotonic() + DELIVERY_BUDGET_SECONDS

    def left() -> float:
        return min(deadline.remaining() - RESERVE_SECONDS, budget_end - time.monotonic())

    def gave_up() -> DeliveryError:
        # Without a single attempt (the job token took the time) nothing is known about the backend.
        return DeliveryError(f"the report could not be sent to {endpoint} ({last})", outage=attempt > 0,
                             cause=cause)

    with requests.Session() as session:
        session.trust_env = True
        while True:
            budget = left()
            if budget <= 0.2:
                raise gave_up()
            attempt += 1
            wait: Optional[float] = None
            try:
                response = session.post(endpoint, data=data, headers=headers, allow_redirects=False,
                                        timeout=(min(CONNECT_CAP, budget), min(READ_CAP, budget)))
            except requests.Timeout:
                last, cause = f"attempt {attempt}: no answer within the timeout", "no answer in time"
            except requests.ConnectionError as exc:
                last = f"attempt {attempt}: cannot connect ({type(exc).__name__})"
                cause = "cannot connect"
            except requests.RequestException as exc:
                message = f"sending the report to {endpoint} failed: {type(exc).__name__}"
                raise DeliveryError(message) from None
            else:
                status = response.status_code
                if status in SUCCESS:
                    try:
                        answer = response.json()
                    except ValueError:
                        answer = None
                    if not isinstance(answer, dict):
                        raise DeliveryError(f"{endpoint} answered HTTP {status} without a JSON object; "
                                            "is IMAGETRAIL_URL the ImageTrail API?")
                    return answer
                if status == 429 or 500 <= status <= 599:
                    last, cause = f"attempt {attempt}: HTTP {status}: {_message(response)}", f"HTTP {status}"
                    wait = retry_after_seconds(response.headers.get("Retry-After"))
                else:
                    raise DeliveryError(
                        f"the backend rejected the report: HTTP {status}: {_message(response)}")
            if attempt >= MAX_ATTEMPTS:
                raise gave_up()
            remaining = left()
            if wait is not None and wait > remaining:
                raise DeliveryError(f"the backend asked to retry after {wait:g} s, beyond the delivery "
                                    f"budget ({last})", outage=True, cause=cause)
            pause = wait if wait is not None else random.uniform(0, backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
            if pause >= remaining:
                raise gave_up()
            time.sleep(pause)
