"""Alembic migrations (env.py, versions/). Run with ``imagetrail db upgrade``; see imagetrail.store.migrate."""
