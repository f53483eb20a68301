"""Etsy through Open API v3, in the shapes Etsy defines: a draft listing (form-encoded, without SKU), its
inventory (SKU, price and stock, JSON), its images (multipart), then the listing made active (form-encoded).

Exactly one listing per product, however often a step is repeated:
- the listing is the one saved in the job's progress, else the product's recorded listing, else one found in
  the shop that is this product's: created after the product, and carrying its SKU in the inventory or (a
  draft whose create answer was lost, before its inventory was set) no SKU and the product's marker in its
  description (`[stoflow:<tenant>:<product>]`, removed when the listing is made active: titles are not unique,
  two products of one title published at once must not take each other's draft). A listing older than the
  product is never taken: it was left by a deleted product that had the same SKU;
- a create is never repeated in-process after an ambiguous failure: the job's next run searches first;
- images are put at their rank with `overwrite`, so a repeated upload replaces instead of adding, and extra
  images of a reused listing are removed;
- every run brings the listing wholly up to date (texts, category, SKU, price, stock, photos) before making it
  active, so a listing found again after a lost answer or a user's retry is today's product.
Every call, refreshes included, takes a slot of the process-wide limiter (Etsy allows 10 per second per app).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

import httpx
import structlog

from domain.catalogue import ProductSnapshot
from domain.jobs import JobErrorCode
from domain.mapping.common import PolicyViolation, listing_sku
from domain.mapping.etsy import EtsyShopSettings, map_to_etsy_listing
from domain.sales import OrderLine, etsy_receipt_lines
from workers.errors import AuthExpired, PermanentPlatformError, TransientPlatformError
from workers.platforms.base import AccountAccess, BudgetSpent, JobInput, ListingOutcome
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
from workers.platforms.media import image_keys

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
#: Inventory fields: `createDraftListing` needs them, `updateListing` does not know them.
INVENTORY_FIELDS = ("price", "quantity")
#: How long a shop's return policies and processing profiles are trusted before they are read again.
SHOP_POLICIES_SECONDS = 600.0


class EtsyAdapter:
    """Publish, update and delist Etsy listings for one worker process."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str,
        shared_secret: str,
        limiter: RequestPacer | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
        clock: Callable[[], float] = time.monotonic,
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
        self._shared_secret = shared_secret
        self._today = today
        self._clock = clock
        #: shop id -> (read at, return policy id, processing profile id), for shops not configured with them.
        self._shop_policies: dict[int, tuple[float, int | None, int | None]] = {}

    def __repr__(self) -> str:
        return f"EtsyAdapter({self._api.base_url!r})"  # never the API key

    # --- the three commands ----------------------------------------------------------------------------

    async def publish(self, job: JobInput) -> ListingOutcome:
        """Find this product's listing or create it, bring it up to date, make it active."""
        product = _product(job)
        shop = _shop(job.credential_settings)
        # Map and check before the first call: a product that cannot be listed fails with nothing sent.
        map_to_etsy_listing(product, job.mappings, shop, today=self._today())
        if not product.image_urls:
            # Etsy refuses to activate a listing without an image: do not leave a draft behind.
            raise PolicyViolation(
                "images_required", "etsy", "etsy requires at least one image", field="images"
            )
        auth = self._session(job)
        shop = await self._with_shop_policies(auth, shop)
        payload = map_to_etsy_listing(product, job.mappings, shop, today=self._today())
        sku = listing_sku(product)
        progress = dict(job.progress)

        listing_id = await self._known_listing(auth, shop.shop_id, _as_int(progress.get("listing_id")))
        uploaded = (_as_int(progress.get("images_uploaded")) or 0) if listing_id is not None else 0
        created = False
        if listing_id is None:
            listing_id = await self._known_listing(auth, shop.shop_id, _listing_id(job))
            if listing_id is None:
                listing_id = await self._find_listing(auth, shop.shop_id, product, draft_marker(job))
            if listing_id is None:
                # The draft's description carries the product's marker until activation rewrites it: a
                # draft whose create answer is lost has no SKU yet, and the marker is what finds it.
                draft = {**payload, "description": f"{payload['description']}\n\n{draft_marker(job)}"}
                listing_id = await self._create_listing(auth, shop.shop_id, draft)
                created = True
                log.info("etsy_listing_created", sku=sku, listing_id=listing_id)
            else:
                log.info("etsy_listing_reused", sku=sku, listing_id=listing_id)
            uploaded = 0
            await job.save_progress({"listing_id": listing_id, "images_uploaded": 0})

        await self._put_inventory(auth, listing_id, sku, payload, shop)
        wanted = product.image_urls[:IMAGES_MAX]
        await self._put_images(auth, job, shop.shop_id, listing_id, wanted, uploaded)
        if not created:
            await self._remove_extra_images(auth, shop.shop_id, listing_id, len(wanted))
        # The listing may be a reused one (an earlier publication, a lost answer): today's texts and
        # category go with the activation, in one idempotent call.
        listing = await self._update_listing(auth, shop.shop_id, listing_id, {**payload, "state": "active"})
        return ListingOutcome(
            external_id=str(listing_id),
            url=_str_or_none(listing.get("url")),
            data={"listing_id": listing_id, "shop_id": shop.shop_id, "images": image_keys(wanted)},
        )

    async def update(self, job: JobInput) -> ListingOutcome:
        """Push title, description and category to the listing, and SKU, price and stock to its inventory."""
        product = _product(job)
        auth = self._session(job)
        shop = await self._with_shop_policies(auth, _shop(job.credential_settings))
        payload = map_to_etsy_listing(product, job.mappings, shop, today=self._today())
        listing_id = await self._known_listing(auth, shop.shop_id, _listing_id(job))
        if listing_id is None:
            listing_id = await self._find_listing(auth, shop.shop_id, product, draft_marker(job))
        if listing_id is None:
            raise PermanentPlatformError(
                JobErrorCode.PLATFORM_REJECTED,
                f"Etsy has no listing for SKU {listing_sku(product)} to update.",
            )
        listing = await self._update_listing(auth, shop.shop_id, listing_id, payload)
        await self._put_inventory(auth, listing_id, listing_sku(product), payload, shop)
        known = job.listing or {}
        wanted = product.image_urls[:IMAGES_MAX]
        await self._follow_images(auth, job, shop.shop_id, listing_id, wanted)
        return ListingOutcome(
            external_id=str(listing_id),
            url=_str_or_none(listing.get("url")) or _str_or_none(known.get("url")),
            data={"listing_id": listing_id, "shop_id": shop.shop_id, "images": image_keys(wanted)},
        )

    async def _follow_images(
        self, auth: OAuthSession, job: JobInput, shop_id: int, listing_id: int, wanted: tuple[str, ...]
    ) -> None:
        """Upload the images that changed rank or are new since the listing was last pushed, drop the rest.

        The listing's data names the images it shows (by their stable path); an image at the same rank is
        not sent again. A listing that does not say (pushed before we kept track) gets them all.
        """
        shown = (job.listing or {}).get("data", {}).get("images")
        keys = image_keys(wanted)
        if shown == keys:
            return
        shown_list = [str(key) for key in shown] if isinstance(shown, list) else []
        first_changed = next(
            (rank for rank, key in enumerate(keys) if rank >= len(shown_list) or shown_list[rank] != key),
            len(keys),
        )
        done = _as_int(job.progress.get("images_uploaded"))
        start = max(first_changed, done or 0)
        # Ranks before the first change keep their image; from there each is overwritten at its rank.
        await self._put_images(auth, job, shop_id, listing_id, wanted, start)
        if len(shown_list) > len(keys) or not isinstance(shown, list):
            await self._remove_extra_images(auth, shop_id, listing_id, len(keys))

    async def listing_ended(self, job: JobInput) -> str | None:
        """Why the live listing in `job.listing` is no longer on sale on Etsy, or None while it is (the sync).

        `sold_out` is a sale, not an end: the sale checks handle it.
        """
        listing_id = _listing_id(job)
        if listing_id is None:
            return None
        response = await self._api.call(
            "GET",
            f"{APPLICATION}/listings/{listing_id}",
            auth=self._session(job),
            headers=self._headers(),
            accept=frozenset({404}),
        )
        if response.status_code == 404:
            return "The listing was deleted on Etsy outside Stoflow."
        state = str(json_object(response, LABEL).get("state") or "")
        if state in ("inactive", "expired", "removed", "draft"):
            return f"The listing is {state} on Etsy (ended outside Stoflow)."
        return None

    async def delist(self, job: JobInput) -> ListingOutcome:
        """Deactivate the listing; one that no longer exists is already off sale."""
        shop = _shop(job.credential_settings)
        auth = self._session(job)
        known = job.listing or {}
        listing_id = _listing_id(job)
        if listing_id is None and job.product is not None:
            listing_id = await self._find_listing(auth, shop.shop_id, job.product, draft_marker(job))
        if listing_id is not None:
            response = await self._api.call(
                "PATCH",
                f"{APPLICATION}/shops/{shop.shop_id}/listings/{listing_id}",
                auth=auth,
                headers=self._headers(),
                data={"state": "inactive"},
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

    async def _known_listing(self, auth: OAuthSession, shop_id: int, listing_id: int | None) -> int | None:
        """The listing id if Etsy still has that listing in this shop (a seller may have deleted it)."""
        if listing_id is None:
            return None
        response = await self._api.call(
            "GET",
            f"{APPLICATION}/listings/{listing_id}",
            auth=auth,
            headers=self._headers(),
            accept=frozenset({404}),
        )
        if response.status_code == 404:
            return None
        listing = json_object(response, LABEL)
        if _as_int(listing.get("shop_id")) not in (None, shop_id):
            return None
        return listing_id

    async def _find_listing(
        self,
        auth: OAuthSession,
        shop_id: int,
        product: ProductSnapshot,
        marker: str,
    ) -> int | None:
        """This product's listing in the shop: created after the product, with its inventory SKU or, for a
        draft whose create answer was lost, no SKU yet and the product's marker. The newest wins."""
        sku = listing_sku(product)
        born = product.created_at.timestamp() if product.created_at is not None else None
        by_sku: list[tuple[int, int]] = []
        unnamed_drafts: list[tuple[int, int]] = []
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
                    listing_id = _as_int(listing.get("listing_id"))
                    created = _as_int(listing.get("created_timestamp")) or 0
                    if listing_id is None or (born is not None and created < int(born)):
                        continue
                    skus = listing.get("skus") or []
                    if isinstance(skus, list) and sku in skus:
                        by_sku.append((created, listing_id))
                    elif not skus and state == "draft" and marker in str(listing.get("description") or ""):
                        unnamed_drafts.append((created, listing_id))
                offset += len(results)
                count = _as_int(page.get("count")) or 0
                if not results or offset >= count:
                    break
        found = max(by_sku) if by_sku else max(unnamed_drafts) if unnamed_drafts else None
        return found[1] if found is not None else None

    async def _create_listing(self, auth: OAuthSession, shop_id: int, payload: dict[str, object]) -> int:
        # Not idempotent: after a lost answer the job's next run searches before creating again.
        response = await self._api.call(
            "POST",
            f"{APPLICATION}/shops/{shop_id}/listings",
            auth=auth,
            headers=self._headers(),
            data=_form(payload),
            idempotent=False,
        )
        listing_id = _as_int(json_object(response, LABEL).get("listing_id"))
        if listing_id is None:
            raise rejection(LABEL, response)
        return listing_id

    async def _update_listing(
        self, auth: OAuthSession, shop_id: int, listing_id: int, fields: Mapping[str, object]
    ) -> dict[str, Any]:
        """PATCH the listing's own fields (price and stock are the inventory's, not the listing's)."""
        response = await self._api.call(
            "PATCH",
            f"{APPLICATION}/shops/{shop_id}/listings/{listing_id}",
            auth=auth,
            headers=self._headers(),
            data=_form({k: v for k, v in fields.items() if k not in INVENTORY_FIELDS}),
        )
        return json_object(response, LABEL)

    async def _put_inventory(
        self,
        auth: OAuthSession,
        listing_id: int,
        sku: str,
        payload: Mapping[str, object],
        shop: EtsyShopSettings,
    ) -> None:
        """Set the listing's one product: our SKU (what finds the listing again), its price and stock."""
        body = {
            "products": [
                {
                    "sku": sku,
                    "property_values": [],
                    "offerings": [
                        {
                            "price": payload["price"],
                            "quantity": payload["quantity"],
                            "is_enabled": True,
                            "readiness_state_id": shop.readiness_state_id,
                        }
                    ],
                }
            ],
            "price_on_property": [],
            "quantity_on_property": [],
            "sku_on_property": [],
        }
        await self._api.call(
            "PUT",
            f"{APPLICATION}/listings/{listing_id}/inventory",
            auth=auth,
            headers=self._headers(),
            json=body,
        )

    async def _put_images(
        self,
        auth: OAuthSession,
        job: JobInput,
        shop_id: int,
        listing_id: int,
        wanted: tuple[str, ...],
        uploaded: int,
    ) -> None:
        """Put each image at its rank, replacing what is there, saving the count after each."""
        for index in range(uploaded, len(wanted)):
            content, content_type = await self._fetch_image(wanted[index])
            # `overwrite` makes the upload idempotent: a repeat after a lost answer replaces, never adds.
            await self._api.call(
                "POST",
                f"{APPLICATION}/shops/{shop_id}/listings/{listing_id}/images",
                auth=auth,
                headers=self._headers(),
                files={"image": (f"image-{index + 1}{_extension(content_type)}", content, content_type)},
                data={"rank": str(index + 1), "overwrite": "true"},
            )
            await job.save_progress({"images_uploaded": index + 1})

    async def _remove_extra_images(
        self, auth: OAuthSession, shop_id: int, listing_id: int, keep: int
    ) -> None:
        """Delete the images of a reused listing past the product's own (photos it no longer has)."""
        response = await self._api.call(
            "GET", f"{APPLICATION}/listings/{listing_id}/images", auth=auth, headers=self._headers()
        )
        images = [i for i in json_object(response, LABEL).get("results") or [] if isinstance(i, dict)]
        for image in images:
            rank, image_id = _as_int(image.get("rank")), _as_int(image.get("listing_image_id"))
            if rank is not None and rank > keep and image_id is not None:
                await self._api.call(
                    "DELETE",
                    f"{APPLICATION}/shops/{shop_id}/listings/{listing_id}/images/{image_id}",
                    auth=auth,
                    headers=self._headers(),
                    accept=frozenset({404}),
                )

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

    async def _with_shop_policies(self, auth: OAuthSession, shop: EtsyShopSettings) -> EtsyShopSettings:
        """The shop settings with a return policy and a processing profile, read from the shop when the
        connection does not name them (a physical listing needs a processing profile, and outside the EU a
        return policy, to go live)."""
        if shop.return_policy_id is not None and shop.readiness_state_id is not None:
            return shop
        cached = self._shop_policies.get(shop.shop_id)
        if cached is None or self._clock() - cached[0] > SHOP_POLICIES_SECONDS:
            return_policy = await self._first_id(
                auth, f"{APPLICATION}/shops/{shop.shop_id}/policies/return", "return_policy_id"
            )
            readiness = await self._first_id(
                auth,
                f"{APPLICATION}/shops/{shop.shop_id}/readiness-state-definitions",
                "readiness_state_id",
            )
            cached = (self._clock(), return_policy, readiness)
            self._shop_policies[shop.shop_id] = cached
        readiness_state_id = shop.readiness_state_id or cached[2]
        if readiness_state_id is None:
            raise PermanentPlatformError(
                JobErrorCode.NOT_CONNECTED,
                "The Etsy shop has no processing profile; create one in Shop Manager, then retry.",
            )
        return EtsyShopSettings(
            shop_id=shop.shop_id,
            shipping_profile_id=shop.shipping_profile_id,
            currency=shop.currency,
            return_policy_id=shop.return_policy_id or cached[1],
            readiness_state_id=readiness_state_id,
        )

    async def _first_id(self, auth: OAuthSession, path: str, key: str) -> int | None:
        response = await self._api.call("GET", path, auth=auth, headers=self._headers())
        for entry in json_object(response, LABEL).get("results") or []:
            if isinstance(entry, dict) and _as_int(entry.get(key)) is not None:
                return _as_int(entry.get(key))
        return None

    # --- OAuth and headers -----------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        # Since February 2026 Etsy refuses application calls whose key lacks the app's shared secret.
        return {"x-api-key": f"{self._api_key}:{self._shared_secret}"}

    async def read_orders(self, access: AccountAccess, since: datetime, until: datetime) -> list[OrderLine]:
        """The shop's receipts modified since `since`, every page; each page spends one call of the budget."""
        shop_id = _as_int(access.credential_settings.get("shop_id"))
        if shop_id is None:
            return []
        auth = OAuthSession(
            LABEL,
            access.credentials,
            self._refresh_tokens,
            access.save_credentials,
            lock=access.credentials_lock,
        )
        lines: list[OrderLine] = []
        offset = 0
        while True:
            if not await access.take_call():
                raise BudgetSpent("Etsy sale checks spent today's budget")
            response = await self._api.call(
                "GET",
                f"{APPLICATION}/shops/{shop_id}/receipts",
                auth=auth,
                headers=self._headers(),
                params={"min_last_modified": int(since.timestamp()), "limit": PAGE_SIZE, "offset": offset},
            )
            body = json_object(response, LABEL)
            receipts = body.get("results")
            page = receipts if isinstance(receipts, list) else []
            for receipt in page:
                if isinstance(receipt, dict):
                    lines.extend(etsy_receipt_lines(receipt))
            offset += PAGE_SIZE
            if len(page) < PAGE_SIZE:
                return lines

    def _session(self, job: JobInput) -> OAuthSession:
        return OAuthSession(
            LABEL, job.credentials, self._refresh_tokens, job.save_credentials, lock=job.credentials_lock
        )

    async def _refresh_tokens(self, refresh_token: str) -> Mapping[str, Any]:
        """Exchange the refresh token; Etsy answers a new access token and a rotated refresh token.

        The token endpoint takes the bare keystring as `client_id` (the shared secret is not sent there).
        """
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
        readiness_state_id=_as_int(settings.get("readiness_state_id")),
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


def draft_marker(job: JobInput) -> str:
    """What names a product in its draft's description until activation (titles are not unique)."""
    product_id = job.product.id if job.product is not None else 0
    return f"[stoflow:{job.tenant_id}:{product_id}]"


def _form(fields: Mapping[str, object]) -> dict[str, str]:
    """Fields as Etsy's form bodies carry them: text, booleans as `true`/`false`, no empty values."""
    form: dict[str, str] = {}
    for name, value in fields.items():
        if value is None:
            continue
        form[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return form
