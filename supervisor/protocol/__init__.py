"""Wire formats (Ollama, llama-server): pure translation, no I/O."""
