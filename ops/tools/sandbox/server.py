"""Run the marketplace sandbox as an HTTP server (blocking), for e2e tests and `stoflow up`."""

from __future__ import annotations

import uvicorn

from ops.tools.sandbox.app import create_sandbox_app


def serve(
    host: str = "127.0.0.1",
    port: int = 8900,
    *,
    allow_http_images: bool = False,
    webhook_url: str | None = None,
    etsy_webhook_secret: str | None = None,
) -> None:
    """Serve a fresh sandbox until interrupted; webhooks go to `webhook_url` (the gateway) when set."""
    app = create_sandbox_app(
        allow_http_images=allow_http_images, webhook_url=webhook_url, etsy_webhook_secret=etsy_webhook_secret
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")
