"""The llamasup command's client side: a client of the HTTP API, as ``ollama`` is."""
