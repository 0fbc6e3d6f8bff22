"""llamasup: an Ollama-compatible server that supervises llama.cpp's llama-server processes."""

__version__ = "0.1.0"
