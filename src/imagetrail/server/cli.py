"""``imagetrail serve``: migrate the database to head, then run the API with uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

from imagetrail.settings import Settings, SettingsError


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() else default


def quiet_library_logs(level: str) -> None:
    """Alembic logs every plugin and context line at INFO; show them only when debugging."""
    if level != "debug":
        logging.getLogger("alembic").setLevel(logging.WARNING)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagetrail serve",
        description="Run the ImageTrail backend. The database comes from IMAGETRAIL_DATABASE_URL "
                    "(default: SQLite file imagetrail.db in the working directory).",
    )
    # Defaults from the environment so a container image can set them (see the Dockerfile).
    parser.add_argument("--host", default=os.environ.get("IMAGETRAIL_HOST", "127.0.0.1"),
                        help="interface to listen on (default $IMAGETRAIL_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=_env_int("IMAGETRAIL_PORT", 8080),
                        help="port (default $IMAGETRAIL_PORT or 8080)")
    parser.add_argument("--workers", type=int, default=_env_int("IMAGETRAIL_WORKERS", 1),
                        help="worker processes (default $IMAGETRAIL_WORKERS or 1; use several with "
                             "PostgreSQL, SQLite serialises writes anyway)")
    parser.add_argument("--no-migrate", action="store_true",
                        help="do not upgrade the schema at start (run 'imagetrail db upgrade' yourself)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return parser


def _mark_boot(settings: Settings) -> None:
    """Before the workers start: they then owe one reconcile pass between them (server/reconcile)."""
    from sqlalchemy.exc import SQLAlchemyError

    from imagetrail.store.db import make_engine
    from imagetrail.store.lease import mark_boot

    engine = make_engine(settings.database_url)
    try:
        mark_boot(engine)
    except SQLAlchemyError:
        pass  # each worker then runs its own startup pass (the lease still serialises them)
    finally:
        engine.dispose()


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_library_logs(args.log_level)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"imagetrail serve: {exc}", file=sys.stderr)
        return 2
    if not args.no_migrate:
        from sqlalchemy.exc import SQLAlchemyError

        from imagetrail.store.db import make_engine
        from imagetrail.store.migrate import upgrade

        engine = make_engine(settings.database_url)
        try:
            upgrade(engine)
        except SQLAlchemyError as exc:
            print(f"imagetrail serve: cannot migrate the database ({type(exc).__name__}: "
                  f"{str(exc).splitlines()[0][:300]}); check IMAGETRAIL_DATABASE_URL", file=sys.stderr)
            return 1
        finally:
            engine.dispose()

    if settings.reconcile_configured:
        _mark_boot(settings)
    import uvicorn

    uvicorn.run("imagetrail.server.app:create_app", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level=args.log_level, access_log=False)
    return 0
