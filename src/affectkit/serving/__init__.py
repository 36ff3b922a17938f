"""HTTP serving: the FastAPI app (``create_app``), its metrics and the demo page."""

from affectkit.serving.app import create_app, serve

__all__ = ["create_app", "serve"]
