"""``imagetrail demo``: load a sample map into a fresh database, then serve it.

The database is ``IMAGETRAIL_DATABASE_URL`` or, when that is unset, ``imagetrail-demo.db`` in the working
directory, so a real ``imagetrail.db`` is never mixed with sample data.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from sqlalchemy.exc import SQLAlchemyError

DEMO_DATABASE_URL = "sqlite:///imagetrail-demo.db"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagetrail demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-serve", action="store_true", help="load the sample map and exit")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("IMAGETRAIL_DATABASE_URL", DEMO_DATABASE_URL)
    from imagetrail.auth.api_keys import create_key
    from imagetrail.demo import sample
    from imagetrail.settings import Settings, SettingsError
    from imagetrail.store.db import make_engine, make_sessionmaker, transaction
    from imagetrail.store.migrate import upgrade

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"imagetrail demo: {exc}", file=sys.stderr)
        return 2
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    try:
        upgrade(engine)
        with sessions() as session:
            if not sample.is_empty(session):
                print(f"imagetrail demo: {settings.database_url} already holds pipelines or clusters; the demo "
                      "loads only into a fresh database (delete imagetrail-demo.db, or set "
                      "IMAGETRAIL_DATABASE_URL to an empty one)", file=sys.stderr)
                return 2
        loaded = sample.load(sessions)
        with transaction(sessions) as session:
            key = create_key(session, "*", "read", "imagetrail demo").key
    except SQLAlchemyError as exc:
        print(f"imagetrail demo: database error ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}); "
              "check IMAGETRAIL_DATABASE_URL", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"demo map loaded into {settings.database_url}: {loaded.reports} pipeline runs of 2 organisations, "
          f"cluster {sample.CLUSTER} with {loaded.containers} containers ({loaded.exposed} exposed), "
          f"{loaded.scans} scans")
    print(f"read key for every organisation (sign in with it): {key}")
    if args.no_serve:
        return 0
    print(f"serving on http://{args.host}:{args.port}/ (Ctrl-C to stop)", flush=True)
    from imagetrail.server import cli as serve

    return serve.main(["--host", args.host, "--port", str(args.port), "--no-migrate", "--log-level", "warning"])
