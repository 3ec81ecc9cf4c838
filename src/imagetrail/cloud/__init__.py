"""Cloud side: running workloads, exposure, vulnerability scans, digest relations, explorer queries."""
