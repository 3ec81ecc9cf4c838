"""``imagetrail keys create|list|revoke``: scoped API keys, stored hashed, shown once."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from sqlalchemy.exc import SQLAlchemyError

from imagetrail.auth.api_keys import SCOPES, ApiKeyError, create_key, list_keys, revoke_key
from imagetrail.settings import Settings, SettingsError
from imagetrail.store.db import make_engine, make_sessionmaker, transaction
from imagetrail.store.migrate import upgrade


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagetrail keys",
                                     description="API keys for IMAGETRAIL_DATABASE_URL (run on the backend).")
    sub = parser.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="create a key; it is printed once and cannot be shown again")
    create.add_argument("--org", required=True, help="organisation the key may act on, or '*' for all")
    create.add_argument("--scope", required=True, choices=SCOPES)
    create.add_argument("--description", help="what the key is for (shown by 'keys list')")
    sub.add_parser("list", help="list keys (never the keys themselves)")
    revoke = sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"imagetrail keys: {exc}", file=sys.stderr)
        return 2
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    new = None
    try:
        # A fresh database gets its schema first, as `imagetrail serve` would give it.
        upgrade(engine)
        with transaction(sessions) as session:
            if args.action == "create":
                new = create_key(session, args.org, args.scope, args.description)
            elif args.action == "list":
                for key in list_keys(session):
                    state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
                    print(f"{key.id}  {key.scope:<6}  {key.organization:<24}  {state:<18}  "
                          f"{key.created_at:%Y-%m-%d}  {key.description or ''}".rstrip())
            elif not revoke_key(session, args.key_id):
                print(f"imagetrail keys: no active key with id {args.key_id!r}", file=sys.stderr)
                return 1
            else:
                print(f"revoked {args.key_id}")
    except ApiKeyError as exc:
        print(f"imagetrail keys: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        nothing = "no key was created; " if args.action == "create" else ""
        print(f"imagetrail keys: database error ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}); "
              f"{nothing}check IMAGETRAIL_DATABASE_URL", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    if new is not None:  # only once committed: a key printed but never stored would be worse than none
        print(new.key)
        print(f"key id {new.id}: scope {args.scope}, organisation {args.org.lower()}; "
              "store it now, it is not shown again", file=sys.stderr)
    return 0
