"""``imagetrail collect pre-job|post-job``: runs as a step of every CI job, so it never
fails the job. It always exits 0, ends within the deadline, and says what went wrong in
one warning line."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Mapping, Optional, Sequence

from imagetrail.collector.console import Console
from imagetrail.collector.context import UnsupportedEnvironment
from imagetrail.collector.deadline import Deadline
from imagetrail.collector.settings import Settings
from imagetrail.collector.watchdog import Watchdog

PHASES = ("pre-job", "post-job")


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


def _parser() -> _Parser:
    parser = _Parser(
        prog="imagetrail collect",
        description="Record the images a CI job pushes (pre-job) and report them with their digests "
                    "(post-job).",
        epilog="Environment: IMAGETRAIL_URL, IMAGETRAIL_API_KEY, IMAGETRAIL_DRY_RUN, IMAGETRAIL_REPORT_FILE, "
               "IMAGETRAIL_DISABLE, IMAGETRAIL_DEADLINE_SECONDS, IMAGETRAIL_AUDIENCE, IMAGETRAIL_ENTRA_*, "
               "IMAGETRAIL_ENGINE_DIR, IMAGETRAIL_BREAKER_SECONDS, IMAGETRAIL_PROBE_SECONDS, IMAGETRAIL_STATE_DIR.",
    )
    parser.add_argument("phase", choices=PHASES)
    parser.add_argument("--dry-run", action="store_true", help="send nothing (IMAGETRAIL_DRY_RUN=true)")
    parser.add_argument("--report-file", metavar="PATH",
                        help="also write the report there (IMAGETRAIL_REPORT_FILE)")
    return parser


def run(argv: Sequence[str], env: Mapping[str, str], console: Console) -> None:
    parser = _parser()
    try:
        args = parser.parse_args(list(argv))
    except _UsageError as exc:
        usage = " ".join(parser.format_usage().split())
        console.warning(f"bad arguments for 'imagetrail collect' ({exc}); {usage}")
        return
    settings = Settings.from_env(env, dry_run=args.dry_run, report_file=args.report_file)
    if settings.disabled:
        console.info("disabled for this job (IMAGETRAIL_DISABLE / pipeline variable imagetrail.disable)")
        return
    if settings.problem:
        console.warning(settings.problem)
    deadline = Deadline.from_process_start(settings.deadline_seconds)
    watchdog = Watchdog(deadline, console, env)
    watchdog.start()
    try:
        if args.phase == "pre-job":
            from imagetrail.collector.prejob import pre_job

            pre_job(env, console, deadline)
        else:
            from imagetrail.collector.postjob import post_job

            post_job(settings, env, console, deadline, watchdog)
    except UnsupportedEnvironment as exc:
        console.info(f"nothing to do: {exc}")
    except Exception as exc:  # noqa: BLE001 - the job must not fail because of the collector
        where = ""
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None:
            where = f" at {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
        console.warning(f"internal error{where}: {type(exc).__name__}: {exc}")
    finally:
        if not watchdog.finish():
            # The watchdog is ending the step right now: let it finish its single warning.
            import time

            time.sleep(5)


def main(argv: Optional[Sequence[str]] = None) -> int:
    env = os.environ
    console = Console(env)
    try:
        run(sys.argv[1:] if argv is None else argv, env, console)
    except SystemExit:  # argparse --help
        pass
    except BaseException as exc:  # noqa: BLE001 - including KeyboardInterrupt: exit 0 regardless
        console.warning(f"stopped: {type(exc).__name__}")
    return 0
