"""What happens to a finished report: written to --report-file, sent (unless dry run),
or kept with the run when it cannot be delivered."""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping

from imagetrail.collector.console import Console
from imagetrail.collector.deadline import Deadline
from imagetrail.collector.fallback import keep_report
from imagetrail.collector.settings import Settings
from imagetrail.collector.state import write_json_atomically
from imagetrail.collector.watchdog import Watchdog


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
    from imagetrail.collector.delivery import DeliveryError, deliver
    from imagetrail.collector.identity import IdentityError, obtain_token

    try:
        token = obtain_token(settings, env, deadline, console)
        deliver(settings.url, token, body, deadline)
    except (IdentityError, DeliveryError) as exc:
        _keep(body, env, console, str(exc), watchdog)
        return
    watchdog.pending_report = None
    console.info(f"reported {_summary(body)} to {settings.url}")
