"""Work that combines queries, writes and outside calls: remediation, owner resolution, reconcile, registry attribution."""
