"""Ingest: checks and writes what reports, inventories, scans and registry events say. Reads no query module."""
