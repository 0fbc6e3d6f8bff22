"""One llama-server process: its command line, its lifetime, and the HTTP client that talks to it."""
