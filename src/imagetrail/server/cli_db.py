"""``imagetrail db upgrade|current``: schema migrations (Alembic)."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from sqlalchemy.exc import SQLAlchemyError

from imagetrail.settings import Settings, SettingsError
from imagetrail.store.db import make_engine
from imagetrail.store.migrate import current_revisions, head_revisions, upgrade


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="imagetrail db",
                                     description="Database migrations for IMAGETRAIL_DATABASE_URL.")
    sub = parser.add_subparsers(dest="action", required=True)
    up = sub.add_parser("upgrade", help="upgrade the schema (default: to head)")
    up.add_argument("revision", nargs="?", default="heads")
    sub.add_parser("current", help="print the schema revision and whether it is at head")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"imagetrail db: {exc}", file=sys.stderr)
        return 2
    engine = make_engine(settings.database_url)
    try:
        if args.action == "upgrade":
            upgrade(engine, args.revision)
        with engine.connect() as connection:
            current = current_revisions(connection)
    except SQLAlchemyError as exc:
        print(f"imagetrail db: database error ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}); "
              "check IMAGETRAIL_DATABASE_URL", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    heads = head_revisions()
    state = "head" if current == heads else f"behind head {', '.join(heads)}"
    print(f"{', '.join(current) or '(empty)'} ({state})")
    return 0
