"""Command-line clients of the backend API (trace, query, k8s sync, scans, remediate)."""
