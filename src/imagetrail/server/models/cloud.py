"""Cloud side tables: workloads, exposure, vulnerability scans, digest relations. Owned by the cloud layer."""
