"""ImageTrail: trace a container image digest back to the CI/CD run, repository, commit and owner."""

__version__ = "0.1.0"
