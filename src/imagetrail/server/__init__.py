"""Composition root: builds the app from its layers (app.py) and the backend commands (serve, db, keys, demo)."""
