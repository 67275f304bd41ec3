"""The live API server: WebSocket channels and REST over the workers' topics, its store and
tokens."""
