"""Build the adapters of a worker pool: one per marketplace whose API base URL is configured."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from ops.adapters.rate_limit import SharedRequestPacer, SlidingWindowLimiter, application_key
from workers.descriptions import build_writer
from workers.platforms.ai import DescriptionAdapter
from workers.platforms.base import PlatformAdapter
from workers.platforms.ebay import EbayAdapter
from workers.platforms.etsy import EtsyAdapter
from workers.platforms.vinted import VintedAdapter

if TYPE_CHECKING:
    from workers.context import WorkerApp

log = structlog.get_logger(__name__)


def _shared_pacer(app: WorkerApp, platform: str, per_second: int | None) -> SharedRequestPacer | None:
    if per_second is None:
        return None
    return SharedRequestPacer(SlidingWindowLimiter(app.redis, per_second, 1), application_key(platform))


def build_adapters(app: WorkerApp) -> dict[str, PlatformAdapter]:
    """The adapters of the real marketplaces, sharing the worker's HTTP client.

    A marketplace without a base URL gets no adapter (its jobs fail with a clear error) rather than a
    default that could send development data to the live marketplace.
    """
    settings = app.settings
    adapters: dict[str, PlatformAdapter] = {}
    if settings.ebay_api_base:
        adapters["ebay"] = EbayAdapter(
            app.http,
            base_url=settings.ebay_api_base,
            client_id=settings.ebay_client_id,
            client_secret=settings.ebay_client_secret.get_secret_value(),
            limiter=_shared_pacer(app, "ebay", settings.ebay_requests_per_second),
        )
    else:
        log.warning("platform_not_configured", target="ebay", setting="EBAY_API_BASE")
    if settings.etsy_api_base:
        adapters["etsy"] = EtsyAdapter(
            app.http,
            base_url=settings.etsy_api_base,
            api_key=settings.etsy_api_key.get_secret_value(),
            shared_secret=settings.etsy_shared_secret.get_secret_value(),
            # Etsy counts requests per application: the budget is shared by every worker process.
            limiter=_shared_pacer(app, "etsy", settings.etsy_requests_per_second),
        )
    else:
        log.warning("platform_not_configured", target="etsy", setting="ETSY_API_BASE")
    # Vinted goes through the user's plugin, so it needs no base URL; only the shared rate limiter.
    adapters["vinted"] = VintedAdapter(
        app,
        SlidingWindowLimiter(app.redis, settings.vinted_rate_limit, settings.vinted_rate_window_seconds),
    )
    # The ai pool writes descriptions (AI_PROVIDER); only its workers need a provider client.
    if app.platform == "ai":
        adapters["ai"] = DescriptionAdapter(app, build_writer(settings))
    return adapters
