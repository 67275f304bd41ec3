"""The live API server: WebSocket channels and REST over the pipeline, its store and tokens."""
