"""Registry access: the OCI distribution client, its authentication, and Ollama's signing key."""
