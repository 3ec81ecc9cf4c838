"""HTTP API routes: thin handlers over ingest, queries and services (docs/backend.md)."""
