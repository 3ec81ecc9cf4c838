"""``POST {IMAGETRAIL_URL}/v1/reports`` with retries, inside the hard deadline.

Retried: connection errors, timeouts, 429 (honouring Retry-After when it fits the budget)
and 5xx, with exponential backoff and full jitter. Not retried: other 4xx - the server's
message is passed on. Success: 200 (already received), 201, 202. Connect and read timeouts
come from the remaining budget, so a backend that accepts and never answers cannot hang the job.
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
CONNECT_CAP = 5.0
READ_CAP = 10.0
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 8.0


class DeliveryError(Exception):
    pass


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
    backoff, attempt, last = FIRST_BACKOFF, 0, "no attempt was made"
    with requests.Session() as session:
        session.trust_env = True
        while True:
            budget = deadline.remaining() - RESERVE_SECONDS
            if budget <= 0.2:
                raise DeliveryError(f"the report could not be sent to {endpoint} in time ({last})")
            attempt += 1
            wait: Optional[float] = None
            try:
                response = session.post(endpoint, data=data, headers=headers, allow_redirects=False,
                                        timeout=(min(CONNECT_CAP, budget), min(READ_CAP, budget)))
            except requests.Timeout:
                last = f"attempt {attempt}: no answer within the timeout"
            except requests.ConnectionError as exc:
                last = f"attempt {attempt}: cannot connect ({type(exc).__name__})"
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
                    last = f"attempt {attempt}: HTTP {status}: {_message(response)}"
                    wait = retry_after_seconds(response.headers.get("Retry-After"))
                else:
                    raise DeliveryError(
                        f"the backend rejected the report: HTTP {status}: {_message(response)}")
            remaining = deadline.remaining() - RESERVE_SECONDS
            if wait is not None and wait > remaining:
                raise DeliveryError(
                    f"the backend asked to retry after {wait:g} s, beyond the deadline ({last})")
            pause = wait if wait is not None else random.uniform(0, backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
            if pause >= remaining:
                raise DeliveryError(f"the report could not be sent to {endpoint} in time ({last})")
            time.sleep(pause)
