"""Thin clients of outside HTTP APIs: OCI registries, Azure Boards / GitHub issues, repository files."""
