"""Use cases: inference (generate/chat), catalog; no HTTP types in signatures."""
