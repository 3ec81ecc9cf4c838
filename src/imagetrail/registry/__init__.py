"""The registry side: push notifications from registries, attribution of pushed images from their labels
and provenance, registry sync, and the pushes nothing explains (docs/registries.md)."""
