"""What happens to a finished report: written to --report-file, sent (unless dry run),
or kept with the run when it cannot be delivered.

While the host's breaker is open (a recent delivery from this agent failed, see ``breaker``)
the report is kept at once, without asking for a token or waiting for the backend; one job
per probe interval checks ``/healthz`` first and delivers normally when the backend is back.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple

from imagetrail.collector.console import Console
from imagetrail.collector.deadline import Deadline
from imagetrail.collector.fallback import keep_report
from imagetrail.collector.settings import Settings
from imagetrail.collector.state import write_json_atomically
from imagetrail.collector.watchdog import Watchdog

if TYPE_CHECKING:
    from imagetrail.collector.breaker import Breaker, Outage


def _summary(body: Dict[str, Any]) -> str:
    count = len(body.get("pushes") or [])
    return f"{count} pushed image reference{'s' if count != 1 else ''} (report {body.get('reportId')})"


def _keep(body: Dict[str, Any], env: Mapping[str, str], console: Console, reason: str,
          watchdog: Watchdog) -> None:
    if not watchdog.finishing():
        return  # the deadline struck: the watchdog keeps the pending report and says so
    try:
        where = keep_report(body, env, console)
    except OSError as exc:
        where = f"the report could not be kept either ({exc})"
    console.warning(f"{reason}; {where}")


def _since(moment: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(moment))


def _open_breaker(url: str, settings: Settings,
                  env: Mapping[str, str]) -> "Tuple[Optional[Breaker], Optional[Outage]]":
    """The host's breaker for this backend, and its outage when jobs should not try to deliver."""
    from imagetrail.collector.breaker import Breaker, probe

    breaker = Breaker.for_backend(env, url, settings.breaker_seconds, settings.probe_seconds)
    outage = breaker.outage() if breaker is not None else None
    if breaker is None or outage is None:
        return breaker, None
    if breaker.claim_probe(outage):
        if probe(url):
            breaker.close()  # back: this job delivers as usual
            return breaker, None
        return breaker, breaker.record_failure(None)
    breaker.record_kept(outage)
    return breaker, outage


def send_report(body: Dict[str, Any], settings: Settings, env: Mapping[str, str], console: Console,
                deadline: Deadline, watchdog: Watchdog) -> None:
    if settings.report_file:
        try:
            directory = os.path.dirname(os.path.abspath(settings.report_file))
            os.makedirs(directory, exist_ok=True)
            write_json_atomically(settings.report_file, body)
        except OSError as exc:
            console.warning(f"cannot write the report file {settings.report_file}: {exc}")
    if settings.dry_run:
        console.info(f"dry run: found {_summary(body)}; nothing sent")
        return
    watchdog.pending_report = body  # kept by the watchdog if the deadline strikes before this step ends
    if not settings.url:
        _keep(body, env, console, f"IMAGETRAIL_URL is not set, so {_summary(body)} was not sent", watchdog)
        return
    breaker, outage = _open_breaker(settings.url, settings, env)
    if outage is not None:
        _keep(body, env, console, f"the backend {settings.url} has not been answering since "
              f"{_since(outage.opened_at)} ({outage.cause}, seen by jobs on this agent), so {_summary(body)} "
              "was not sent, to spare this job the wait", watchdog)
        return
    from imagetrail.collector.delivery import DeliveryError, deliver
    from imagetrail.collector.identity import IdentityError, obtain_token

    started = time.time()
    try:
        token = obtain_token(settings, env, deadline, console)
        deliver(settings.url, token, body, deadline)
    except IdentityError as exc:
        _keep(body, env, console, str(exc), watchdog)
        return
    except DeliveryError as exc:
        reason = str(exc)
        if exc.outage and breaker is not None:
            breaker.record_failure(exc.cause)
            reason += (f"; for the next {settings.breaker_seconds / 60:g} min jobs on this agent keep "
                       "their reports without waiting")
        _keep(body, env, console, reason, watchdog)
        return
    if breaker is not None:
        current = breaker.outage()
        if current is not None and current.opened_at <= started:
            breaker.close()  # delivered: whatever failed before is over
    watchdog.pending_report = None
    console.info(f"reported {_summary(body)} to {settings.url}")
