"""Registry access: the OCI distribution client, its authentication, and Ollama's signing key.

``client`` (the protocol steps pull and push call: `RegistryClient`, `Repository`, `BlobLocation`),
``transport`` (one aiohttp session: authentication, redirects, typed errors), ``auth`` (pure:
challenges, scopes, token URLs, the realm check, the `Signer` protocol), ``credentials`` (llamasup's
credentials file and Docker's config), ``proxy`` (pure: which proxy a URL takes), ``ollama_key`` and
``ed25519`` (Ollama's signing key; ``OllamaKey`` is a `Signer`).
"""
