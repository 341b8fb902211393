"""Cadencia's services: one FastAPI app per package, each built by ``create_app(settings)``."""
