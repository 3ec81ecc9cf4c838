"""Collects the images a CI job pushed and reports them.

Runs on agents: standard library plus lazily imported docker/requests; Python 3.9+."""
