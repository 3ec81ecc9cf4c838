"""Pure parsers for what arrives from outside (scanner reports, Kubernetes objects, registry events, labels,
provenance, CODEOWNERS). Parsers never touch the store."""
