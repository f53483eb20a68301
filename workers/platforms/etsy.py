"""Etsy through Open API v3: draft listing (found by SKU first) -> images -> active.

Exactly one listing per command, however often a step is repeated:
- before creating, the shop's draft, active and inactive listings are searched for the SKU, and a listing
  found is reused whatever its state; the listing id is saved in the job's progress at once;
- a create is never repeated in-process after an ambiguous failure (a lost answer may hide a listing):
  the job's next run searches again first;
- images are counted on the listing before uploading, so a retry uploads only the missing ones, and the
  count is saved after each upload;
- activating an active listing changes nothing.
Every call, refreshes included, takes a slot of the process-wide limiter (Etsy allows 10 per second per app).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

import httpx
import structlog

from domain.catalogue import ProductSnapshot
from domain.jobs import JobErrorCode
from domain.mapping.common import PolicyViolation, listing_sku
from domain.mapping.etsy import EtsyShopSettings, map_to_etsy_listing
from workers.errors import AuthExpired, PermanentPlatformError, TransientPlatformError
from workers.platforms.base import JobInput, ListingOutcome
from workers.platforms.http import (
    DEFAULT_TIMEOUT,
    MarketplaceClient,
    OAuthSession,
    RequestPacer,
    RequestRateLimiter,
    RetryPolicy,
    error_message,
    json_object,
    rejection,
    send_with_retries,
)

log = structlog.get_logger(__name__)

LABEL = "Etsy"
APPLICATION = "/v3/application"
OAUTH_PATH = "/v3/public/oauth/token"
#: Etsy's per-application limit.
REQUESTS_PER_SECOND = 10.0
#: Etsy keeps at most ten images per listing.
IMAGES_MAX = 10
#: The states a listing of ours can be in while it may still be reused (sold out and expired ones are
#: past selling, and a new publication of the product lists it afresh).
SEARCHED_STATES = ("draft", "active", "inactive")
PAGE_SIZE = 100
#: The fields an update pushes; the rest (who_made, taxonomy...) were fixed at creation.
UPDATED_FIELDS = ("title", "description", "price", "quantity")


class EtsyAdapter:
    """Publish, update and delist Etsy listings for one worker process."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str,
        limiter: RequestPacer | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        self._api = MarketplaceClient(
            http,
            label=LABEL,
            base_url=base_url,
            retry=retry,
            timeout=timeout,
            limiter=limiter if limiter is not None else RequestRateLimiter(REQUESTS_PER_SECOND),
        )
        self._api_key = api_key
        self._today = today

    def __repr__(self) -> str:
        return f"EtsyAdapter({self._api.base_url!r})"  # never the API key

    # --- the three commands ----------------------------------------------------------------------------

    async def publish(self, job: JobInput) -> ListingOutcome:
        """Find or create the SKU's listing, upload its images, activate it."""
        product = _product(job)
        shop = _shop(job.credential_settings)
        # Map and check before the first call: a product that cannot be listed fails with nothing sent.
        payload = map_to_etsy_listing(product, job.mappings, shop, today=self._today())
        if not product.image_urls:
            # Etsy refuses to activate a listing without an image: do not leave a draft behind.
            raise PolicyViolation(
                "images_required", "etsy", "etsy requires at least one image", field="images"
            )
        sku = listing_sku(product)
        auth = self._session(job)
        progress = dict(job.progress)

        listing_id = _as_int(progress.get("listing_id"))
        if listing_id is None:
            listing_id = await self._find_listing(auth, shop.shop_id, sku)
            if listing_id is None:
                listing_id = await self._create_listing(auth, shop.shop_id, payload)
                log.info("etsy_listing_created", sku=sku, listing_id=listing_id)
            else:
                log.info("etsy_listing_reused", sku=sku, listing_id=listing_id)
            await job.save_progress({"listing_id": listing_id})

        wanted = product.image_urls[:IMAGES_MAX]
        uploaded = _as_int(progress.get("images_uploaded")) or 0
        if uploaded < len(wanted):
            await self._upload_missing_images(auth, job, shop.shop_id, listing_id, wanted)

        # The listing may be a reused one from an earlier, since delisted publication: activate it with
        # today's texts, price and stock in the same (idempotent) call.
        response = await self._api.call(
            "PATCH",
            f"{APPLICATION}/shops/{shop.shop_id}/listings/{listing_id}",
            auth=auth,
            headers=self._headers(),
            json={**{name: payload[name] for name in UPDATED_FIELDS}, "state": "active"},
        )
        listing = json_object(response, LABEL)
        return ListingOutcome(
            external_id=str(listing_id),
            url=_str_or_none(listing.get("url")),
            data={"listing_id": listing_id, "shop_id": shop.shop_id},
        )

    async def update(self, job: JobInput) -> ListingOutcome:
        """Push title, description, price and quantity to the live listing."""
        product = _product(job)
        shop = _shop(job.credential_settings)
        payload = map_to_etsy_listing(product, job.mappings, shop, today=self._today())
        auth = self._session(job)
        listing_id = _listing_id(job)
        if listing_id is None:
            listing_id = await self._find_listing(auth, shop.shop_id, listing_sku(product))
        if listing_id is None:
            raise PermanentPlatformError(
                JobErrorCode.PLATFORM_REJECTED,
                f"Etsy has no listing for SKU {listing_sku(product)} to update.",
            )
        response = await self._api.call(
            "PATCH",
            f"{APPLICATION}/shops/{shop.shop_id}/listings/{listing_id}",
            auth=auth,
            headers=self._headers(),
            json={name: payload[name] for name in UPDATED_FIELDS},
        )
        listing = json_object(response, LABEL)
        known = job.listing or {}
        return ListingOutcome(
            external_id=str(listing_id),
            url=_str_or_none(listing.get("url")) or _str_or_none(known.get("url")),
            data={"listing_id": listing_id, "shop_id": shop.shop_id},
        )

    async def delist(self, job: JobInput) -> ListingOutcome:
        """Deactivate the listing; one that no longer exists is already off sale."""
        shop = _shop(job.credential_settings)
        auth = self._session(job)
        known = job.listing or {}
        listing_id = _listing_id(job)
        if listing_id is None and job.product is not None:
            listing_id = await self._find_listing(auth, shop.shop_id, listing_sku(job.product))
        if listing_id is not None:
            response = await self._api.call(
                "PATCH",
                f"{APPLICATION}/shops/{shop.shop_id}/listings/{listing_id}",
                auth=auth,
                headers=self._headers(),
                json={"state": "inactive"},
                accept=frozenset({404}),
            )
            if response.status_code == 404:
                log.info("etsy_listing_already_gone", listing_id=listing_id)
        return ListingOutcome(
            external_id=str(listing_id) if listing_id is not None else known.get("external_id"),
            url=_str_or_none(known.get("url")),
            data={"listing_id": listing_id, "shop_id": shop.shop_id} if listing_id is not None else {},
        )

    # --- steps -----------------------------------------------------------------------------------------

    async def _find_listing(self, auth: OAuthSession, shop_id: int, sku: str) -> int | None:
        """The id of a shop listing carrying the SKU, searched through every reusable state."""
        for state in SEARCHED_STATES:
            offset = 0
            while True:
                response = await self._api.call(
                    "GET",
                    f"{APPLICATION}/shops/{shop_id}/listings",
                    auth=auth,
                    headers=self._headers(),
                    params={"state": state, "limit": PAGE_SIZE, "offset": offset},
                )
                page = json_object(response, LABEL)
                results = [r for r in page.get("results") or [] if isinstance(r, dict)]
                for listing in results:
                    skus = listing.get("skus") or []
                    listing_id = _as_int(listing.get("listing_id"))
                    if isinstance(skus, list) and sku in skus and listing_id is not None:
                        return listing_id
                offset += len(results)
                count = _as_int(page.get("count")) or 0
                if not results or offset >= count:
                    break
        return None

    async def _create_listing(self, auth: OAuthSession, shop_id: int, payload: dict[str, object]) -> int:
        # Not idempotent: after a lost answer the job's next run searches by SKU before creating again.
        response = await self._api.call(
            "POST",
            f"{APPLICATION}/shops/{shop_id}/listings",
            auth=auth,
            headers=self._headers(),
            json=payload,
            idempotent=False,
        )
        listing_id = _as_int(json_object(response, LABEL).get("listing_id"))
        if listing_id is None:
            raise rejection(LABEL, response)
        return listing_id

    async def _upload_missing_images(
        self, auth: OAuthSession, job: JobInput, shop_id: int, listing_id: int, wanted: tuple[str, ...]
    ) -> None:
        """Upload the images the listing does not have yet, in order, saving the count after each."""
        response = await self._api.call(
            "GET", f"{APPLICATION}/listings/{listing_id}/images", auth=auth, headers=self._headers()
        )
        body = json_object(response, LABEL)
        # Count on the listing itself: an upload whose answer was lost is there although not in progress.
        present = _as_int(body.get("count"))
        if present is None:
            present = len(body.get("results") or [])
        for index in range(present, len(wanted)):
            content, content_type = await self._fetch_image(wanted[index])
            await self._api.call(
                "POST",
                f"{APPLICATION}/shops/{shop_id}/listings/{listing_id}/images",
                auth=auth,
                headers=self._headers(),
                files={"image": (f"image-{index + 1}{_extension(content_type)}", content, content_type)},
                data={"rank": str(index + 1)},
                idempotent=False,
            )
            await job.save_progress({"images_uploaded": index + 1})
        if present >= len(wanted):
            await job.save_progress({"images_uploaded": len(wanted)})

    async def _fetch_image(self, url: str) -> tuple[bytes, str]:
        """Download one of the product's images (our own media URLs) on the shared client."""
        response = await send_with_retries(
            self._api.http,
            "GET",
            url,
            label="media",
            policy=self._api.retry,
            timeouts=self._api.timeout,
        )
        if not response.is_success:
            raise PermanentPlatformError(
                "image_unavailable",
                f"An image of the product could not be read ({response.status_code} at "
                f"{httpx.URL(url).path}).",
            )
        if not response.content:
            raise TransientPlatformError(f"An image at {httpx.URL(url).path} came back empty.")
        content_type = response.headers.get("content-type", "image/jpeg").split(";")[0].strip()
        return response.content, content_type or "image/jpeg"

    # --- OAuth and headers -----------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"x-api-key": self._api_key}

    def _session(self, job: JobInput) -> OAuthSession:
        return OAuthSession(LABEL, job.credentials, self._refresh_tokens, job.save_credentials)

    async def _refresh_tokens(self, refresh_token: str) -> Mapping[str, Any]:
        """Exchange the refresh token; Etsy answers a new access token and a rotated refresh token."""
        response = await self._api.call(
            "POST",
            OAUTH_PATH,
            auth=None,
            data={"grant_type": "refresh_token", "client_id": self._api_key, "refresh_token": refresh_token},
            accept=frozenset({400, 401}),
        )
        if response.is_success:
            return json_object(response, LABEL)
        raise AuthExpired(f"Etsy could not refresh the shop's token: {error_message(response)}")


def _product(job: JobInput) -> ProductSnapshot:
    if job.product is None:
        raise PermanentPlatformError(
            JobErrorCode.PLATFORM_REJECTED, "The job has no product to send to Etsy."
        )
    return job.product


def _shop(settings: Mapping[str, Any]) -> EtsyShopSettings:
    shop_id = _as_int(settings.get("shop_id"))
    shipping_profile_id = _as_int(settings.get("shipping_profile_id"))
    if shop_id is None or shipping_profile_id is None:
        raise PermanentPlatformError(
            JobErrorCode.NOT_CONNECTED,
            "The Etsy connection lacks its shop_id or shipping_profile_id; reconnect the shop.",
        )
    currency = settings.get("currency")
    return EtsyShopSettings(
        shop_id=shop_id,
        shipping_profile_id=shipping_profile_id,
        currency=currency if isinstance(currency, str) and currency else "EUR",
        return_policy_id=_as_int(settings.get("return_policy_id")),
    )


def _listing_id(job: JobInput) -> int | None:
    listing = job.listing or {}
    data = listing.get("data") or {}
    from_data = _as_int(data.get("listing_id")) if isinstance(data, dict) else None
    return from_data if from_data is not None else _as_int(listing.get("external_id"))


def _as_int(value: object) -> int | None:
    """An id given as int or digit string (settings and JSON hold both); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _extension(content_type: str) -> str:
    return {"image/png": ".png", "image/webp": ".webp", "image/gif": ".gif"}.get(content_type, ".jpg")
