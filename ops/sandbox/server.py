"""Run the marketplace sandbox as an HTTP server (blocking), for e2e tests and `stoflow up`."""

from __future__ import annotations

import uvicorn

from ops.sandbox.app import create_sandbox_app


def serve(host: str = "127.0.0.1", port: int = 8900, *, allow_http_images: bool = False) -> None:
    """Serve a fresh sandbox until interrupted."""
    app = create_sandbox_app(allow_http_images=allow_http_images)
    uvicorn.run(app, host=host, port=port, log_level="warning")
