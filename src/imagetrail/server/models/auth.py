"""API keys (stored hashed). Owned by the auth layer."""
