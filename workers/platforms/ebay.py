"""eBay through the Sell Inventory API: inventory item (by SKU) -> offer -> published listing.

Exactly one listing per command, however often a step is repeated:
- the inventory item is keyed by SKU, so PUT is idempotent;
- the offer is looked up by SKU before one is created, and a create that eBay answers with "offer
  entity already exists" (errorId 25002 naming an offerId) adopts that offer;
- publishing a published offer answers the same listing id.
The offer id is saved in the job's progress before publishing, so a later run goes straight to it; the
inventory item and the offer are still re-sent on every run (PUT replaces them), so a run after a
failure the seller has fixed publishes today's data.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog

from domain.catalogue import ProductSnapshot
from domain.jobs import JobErrorCode
from domain.mapping.common import listing_sku
from domain.mapping.ebay import (
    EbayAccountSettings,
    ebay_listing_from,
    map_to_ebay_inventory_item,
    map_to_ebay_offer,
)
from domain.mapping.reverse import ForeignListing
from domain.sales import OrderLine, ebay_order_lines
from workers.errors import AuthExpired, PermanentPlatformError
from workers.platforms.base import AccountAccess, BudgetSpent, JobInput, ListingOutcome
from workers.platforms.http import (
    DEFAULT_TIMEOUT,
    MarketplaceClient,
    OAuthSession,
    RequestPacer,
    RetryPolicy,
    error_message,
    json_object,
    rejection,
)

log = structlog.get_logger(__name__)

LABEL = "eBay"
INVENTORY = "/sell/inventory/v1"
OAUTH_PATH = "/identity/v1/oauth2/token"
#: The scope a seller's token needs for the Sell Inventory API.
INVENTORY_SCOPE = "https://api.ebay.com/oauth/api_scope/sell.inventory"
FULFILLMENT = "/sell/fulfillment/v1"
ORDERS_PAGE = 200
#: eBay's error ids: 25002 is its catch-all user error (also "offer entity already exists"),
#: 25713 "this offer is not available".
USER_ERROR = 25002
OFFER_NOT_AVAILABLE = 25713
#: Inventory items per getInventoryItems page (eBay allows up to 200).
INVENTORY_PAGE = 100
#: The fields that name an offer in `createOffer` and are no part of `updateOffer`'s body.
OFFER_KEYS = frozenset({"sku", "marketplaceId", "format"})

#: Marketplace -> (Content-Language of the listing texts, public site host).
MARKETPLACE_SITES: dict[str, tuple[str, str]] = {
    "EBAY_US": ("en-US", "www.ebay.com"),
    "EBAY_GB": ("en-GB", "www.ebay.co.uk"),
    "EBAY_FR": ("fr-FR", "www.ebay.fr"),
    "EBAY_DE": ("de-DE", "www.ebay.de"),
    "EBAY_IT": ("it-IT", "www.ebay.it"),
    "EBAY_ES": ("es-ES", "www.ebay.es"),
    "EBAY_NL": ("nl-NL", "www.ebay.nl"),
    "EBAY_BE": ("fr-BE", "www.befr.ebay.be"),
    "EBAY_AT": ("de-AT", "www.ebay.at"),
    "EBAY_IE": ("en-GB", "www.ebay.ie"),
    "EBAY_CH": ("de-CH", "www.ebay.ch"),
    "EBAY_PL": ("pl-PL", "www.ebay.pl"),
    "EBAY_CA": ("en-CA", "www.ebay.ca"),
    "EBAY_AU": ("en-AU", "www.ebay.com.au"),
}

_SETTING_KEYS = (
    "marketplace_id",
    "fulfillment_policy_id",
    "payment_policy_id",
    "return_policy_id",
    "merchant_location_key",
)


class EbayAdapter:
    """Publish, update and delist fixed-price eBay listings for one worker process."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        client_id: str,
        client_secret: str,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        limiter: RequestPacer | None = None,
    ) -> None:
        self._api = MarketplaceClient(
            http, label=LABEL, base_url=base_url, retry=retry, timeout=timeout, limiter=limiter
        )
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        self._basic_auth = f"Basic {basic}"

    def __repr__(self) -> str:
        return f"EbayAdapter({self._api.base_url!r})"  # never the client secret

    # --- the three commands ----------------------------------------------------------------------------

    async def publish(self, job: JobInput) -> ListingOutcome:
        """Put the inventory item, find or create its offer, publish it: one listing per SKU."""
        product = _product(job)
        account = _account(job.credential_settings)
        # Map both payloads before the first call: a product that cannot be listed fails with nothing sent.
        item = map_to_ebay_inventory_item(product, job.mappings)
        offer = map_to_ebay_offer(product, job.mappings, account)
        sku = listing_sku(product)
        auth = self._session(job)
        headers = _headers(account)
        progress = dict(job.progress)

        # Always sent, although a saved step: PUT is idempotent by SKU, and a run after a failure (the
        # seller may have fixed the product or the account's policies since) must publish today's data.
        await self._put_inventory_item(auth, headers, sku, item)
        await job.save_progress({"inventory_item": sku})
        offer_id = progress.get("offer_id")
        if isinstance(offer_id, str) and offer_id:
            await self._put_offer(auth, headers, offer_id, offer)
        else:
            offer_id = await self._find_or_create_offer(auth, headers, sku, account, offer)
            await job.save_progress({"offer_id": offer_id})
        listing_id = await self._publish_offer(auth, headers, offer_id)
        log.info("ebay_listing_published", sku=sku, offer_id=offer_id, listing_id=listing_id)
        return ListingOutcome(
            external_id=listing_id,
            url=listing_url(account.marketplace_id, listing_id),
            data={"offer_id": offer_id},
        )

    async def update(self, job: JobInput) -> ListingOutcome:
        """Push the current product into the inventory item and the offer (eBay revises the listing)."""
        product = _product(job)
        account = _account(job.credential_settings)
        item = map_to_ebay_inventory_item(product, job.mappings)
        offer = map_to_ebay_offer(product, job.mappings, account)
        sku = listing_sku(product)
        auth = self._session(job)
        headers = _headers(account)

        offer_id = _listing_offer_id(job) or await self._find_offer(auth, headers, sku, account)
        if offer_id is None:
            raise PermanentPlatformError(
                JobErrorCode.PLATFORM_REJECTED, f"eBay has no offer for SKU {sku} to update."
            )
        # Both PUTs replace whole resources: a repeated run simply sends them again, nothing to save.
        await self._put_inventory_item(auth, headers, sku, item)
        await self._put_offer(auth, headers, offer_id, offer)
        listing = job.listing or {}
        return ListingOutcome(
            external_id=listing.get("external_id"), url=listing.get("url"), data={"offer_id": offer_id}
        )

    async def delist(self, job: JobInput) -> ListingOutcome:
        """Withdraw the offer, ending its listing; an offer already withdrawn or gone counts as done."""
        account = _account(job.credential_settings)
        auth = self._session(job)
        headers = _headers(account)
        listing = job.listing or {}
        offer_id = _listing_offer_id(job)
        if offer_id is None and job.product is not None:
            offer_id = await self._find_offer(auth, headers, listing_sku(job.product), account)
        if offer_id is not None:
            response = await self._api.call(
                "POST",
                f"{INVENTORY}/offer/{offer_id}/withdraw",
                auth=auth,
                headers=headers,
                accept=frozenset({400, 404}),
            )
            if response.status_code == 404 or (response.status_code == 400 and _is_not_published(response)):
                log.info("ebay_offer_already_withdrawn", offer_id=offer_id)
            elif not response.is_success:
                raise rejection(LABEL, response)
        return ListingOutcome(
            external_id=listing.get("external_id"),
            url=listing.get("url"),
            data={"offer_id": offer_id} if offer_id is not None else {},
        )

    async def listing_ended(self, job: JobInput) -> str | None:
        """Why the live listing in `job.listing` is no longer on eBay, or None while it is (the sync)."""
        listing = job.listing or {}
        offer_id = _listing_offer_id(job)
        if offer_id is None:
            return None  # nothing to look it up by; the listing's own jobs will find out
        account = _account(job.credential_settings)
        response = await self._api.call(
            "GET",
            f"{INVENTORY}/offer/{offer_id}",
            auth=self._session(job),
            headers=_headers(account),
            accept=frozenset({404}),
        )
        if response.status_code == 404:
            return "The eBay offer was deleted outside Stoflow."
        offer = json_object(response, LABEL)
        live = offer.get("listing") if isinstance(offer.get("listing"), dict) else {}
        assert isinstance(live, dict)
        if offer.get("status") != "PUBLISHED" or str(live.get("listingId")) != str(
            listing.get("external_id")
        ):
            return "The listing was ended on eBay outside Stoflow."
        if str(live.get("listingStatus") or "ACTIVE") not in ("ACTIVE", "OUT_OF_STOCK"):
            return f"The listing is {str(live.get('listingStatus')).lower()} on eBay."
        return None

    async def import_listings(self, job: JobInput) -> ListingOutcome:
        """Read every inventory item (getInventoryItems, a page at a time) and its published offer.

        Reads only: what was found is written when the job finishes, so a repeated run reads again.
        """
        account = _account(job.credential_settings)
        auth = self._session(job)
        headers = _headers(account)
        found: list[ForeignListing] = []
        offset = 0
        while True:
            response = await self._api.call(
                "GET",
                f"{INVENTORY}/inventory_item",
                auth=auth,
                headers=headers,
                params={"limit": INVENTORY_PAGE, "offset": offset},
            )
            page = json_object(response, LABEL)
            items = [item for item in page.get("inventoryItems") or [] if isinstance(item, dict)]
            for item in items:
                sku = item.get("sku")
                if not isinstance(sku, str) or not sku:
                    continue
                for offer in await self._offers_of(auth, headers, sku, account):
                    listing = offer.get("listing")
                    listing_id = listing.get("listingId") if isinstance(listing, dict) else None
                    if offer.get("status") == "PUBLISHED" and listing_id:
                        url = listing_url(account.marketplace_id, str(listing_id))
                        found.append(ebay_listing_from(item, offer, url))
            offset += len(items)
            total = page.get("total")
            if not items or not isinstance(total, int) or offset >= total:
                break
        log.info("ebay_inventory_read", listings=len(found))
        return ListingOutcome(external_id=None, url=None, imported=tuple(found))

    # --- steps -----------------------------------------------------------------------------------------

    async def _put_inventory_item(
        self, auth: OAuthSession, headers: Mapping[str, str], sku: str, item: dict[str, object]
    ) -> None:
        await self._api.call(
            "PUT", f"{INVENTORY}/inventory_item/{sku}", auth=auth, headers=headers, json=item
        )

    async def _find_offer(
        self, auth: OAuthSession, headers: Mapping[str, str], sku: str, account: EbayAccountSettings
    ) -> str | None:
        """The id of the SKU's fixed-price offer on the account's marketplace, or None."""
        for offer in await self._offers_of(auth, headers, sku, account):
            return str(offer["offerId"])
        return None

    async def _offers_of(
        self, auth: OAuthSession, headers: Mapping[str, str], sku: str, account: EbayAccountSettings
    ) -> list[dict[str, Any]]:
        """The SKU's fixed-price offers on the account's marketplace (getOffers)."""
        response = await self._api.call(
            "GET",
            f"{INVENTORY}/offer",
            auth=auth,
            headers=headers,
            params={"sku": sku, "marketplace_id": account.marketplace_id, "format": "FIXED_PRICE"},
            # eBay answers "no offers for this SKU" with 404 / 25713, and with 400 / 25713 on some sites.
            accept=frozenset({400, 404}),
        )
        if response.status_code in (400, 404):
            if _error_ids(response) & {OFFER_NOT_AVAILABLE} or response.status_code == 404:
                return []
            raise rejection(LABEL, response)
        return [
            offer
            for offer in json_object(response, LABEL).get("offers") or []
            if isinstance(offer, dict)
            and offer.get("marketplaceId", account.marketplace_id) == account.marketplace_id
            and offer.get("format", "FIXED_PRICE") == "FIXED_PRICE"
            and offer.get("offerId")
        ]

    async def _find_or_create_offer(
        self,
        auth: OAuthSession,
        headers: Mapping[str, str],
        sku: str,
        account: EbayAccountSettings,
        offer: dict[str, object],
    ) -> str:
        """Adopt the SKU's existing offer (bringing it up to date) or create one."""
        offer_id = await self._find_offer(auth, headers, sku, account)
        if offer_id is None:
            # A repeated create is safe: eBay refuses a second offer for the SKU and names the first.
            response = await self._api.call(
                "POST", f"{INVENTORY}/offer", auth=auth, headers=headers, json=offer, accept=frozenset({400})
            )
            if response.is_success:
                created = json_object(response, LABEL).get("offerId")
                if not created:
                    raise rejection(LABEL, response)
                return str(created)
            offer_id = _existing_offer_id(response)
            if offer_id is None:
                raise rejection(LABEL, response)
        # The offer may come from an earlier, since delisted publication: give it today's price and texts.
        await self._put_offer(auth, headers, offer_id, offer)
        return offer_id

    async def _put_offer(
        self, auth: OAuthSession, headers: Mapping[str, str], offer_id: str, offer: dict[str, object]
    ) -> None:
        """Replace the offer's fields (eBay revises a published offer's listing in place).

        `updateOffer` takes EbayOfferDetailsWithId: the offer's keys (SKU, marketplace, format) are fixed at
        creation and are not part of its body.
        """
        body = {name: value for name, value in offer.items() if name not in OFFER_KEYS}
        await self._api.call("PUT", f"{INVENTORY}/offer/{offer_id}", auth=auth, headers=headers, json=body)

    async def _publish_offer(self, auth: OAuthSession, headers: Mapping[str, str], offer_id: str) -> str:
        response = await self._api.call(
            "POST", f"{INVENTORY}/offer/{offer_id}/publish", auth=auth, headers=headers
        )
        listing_id = json_object(response, LABEL).get("listingId")
        if not listing_id:
            raise rejection(LABEL, response)
        return str(listing_id)

    # --- sales -----------------------------------------------------------------------------------------

    async def read_orders(self, access: AccountAccess, since: datetime, until: datetime) -> list[OrderLine]:
        """getOrders modified in [since, until], every page; each page spends one call of the budget."""
        auth = OAuthSession(
            LABEL,
            access.credentials,
            self._refresh_tokens,
            access.save_credentials,
            lock=access.credentials_lock,
        )
        window = f"lastmodifieddate:[{_iso(since)}..{_iso(until)}]"
        lines: list[OrderLine] = []
        offset = 0
        while True:
            if not await access.take_call():
                raise BudgetSpent("eBay sale checks spent today's budget")
            response = await self._api.call(
                "GET",
                f"{FULFILLMENT}/order",
                auth=auth,
                params={"filter": window, "limit": ORDERS_PAGE, "offset": offset},
            )
            body = json_object(response, LABEL)
            orders = body.get("orders")
            for order in orders if isinstance(orders, list) else []:
                if isinstance(order, dict):
                    lines.extend(ebay_order_lines(order))
            if not body.get("next"):
                return lines
            offset += ORDERS_PAGE

    # --- OAuth -----------------------------------------------------------------------------------------

    def _session(self, job: JobInput) -> OAuthSession:
        return OAuthSession(
            LABEL, job.credentials, self._refresh_tokens, job.save_credentials, lock=job.credentials_lock
        )

    async def _refresh_tokens(self, refresh_token: str) -> Mapping[str, Any]:
        """Exchange the seller's refresh token for a user access token (eBay does not rotate it)."""
        response = await self._api.call(
            "POST",
            OAUTH_PATH,
            auth=None,
            headers={"Authorization": self._basic_auth},
            data={"grant_type": "refresh_token", "refresh_token": refresh_token, "scope": INVENTORY_SCOPE},
            accept=frozenset({400, 401}),
        )
        if response.is_success:
            return json_object(response, LABEL)
        body = _safe_json(response)
        if body.get("error") == "invalid_client":
            # Our application's keys are wrong: reconnecting the seller would not help.
            raise PermanentPlatformError(
                JobErrorCode.PLATFORM_REJECTED,
                f"eBay refused Stoflow's client credentials: {error_message(response)}",
            )
        raise AuthExpired(f"eBay could not refresh the seller's token: {error_message(response)}")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def listing_url(marketplace_id: str, listing_id: str) -> str:
    """The public page of a listing on the marketplace's site."""
    host = MARKETPLACE_SITES.get(marketplace_id, ("", "www.ebay.com"))[1]
    return f"https://{host}/itm/{listing_id}"


def _product(job: JobInput) -> ProductSnapshot:
    if job.product is None:
        raise PermanentPlatformError(
            JobErrorCode.PLATFORM_REJECTED, "The job has no product to send to eBay."
        )
    return job.product


def _account(settings: Mapping[str, Any]) -> EbayAccountSettings:
    missing = [key for key in _SETTING_KEYS if not settings.get(key)]
    if missing:
        raise PermanentPlatformError(
            JobErrorCode.NOT_CONNECTED,
            f"The eBay connection lacks {', '.join(missing)}; reconnect the account.",
        )
    return EbayAccountSettings(**{key: str(settings[key]) for key in _SETTING_KEYS})


def _headers(account: EbayAccountSettings) -> dict[str, str]:
    language = MARKETPLACE_SITES.get(account.marketplace_id, ("en-US", ""))[0]
    # Content-Language says which language the item texts are in; eBay refuses writes without it.
    return {"Content-Language": language, "X-EBAY-C-MARKETPLACE-ID": account.marketplace_id}


def _listing_offer_id(job: JobInput) -> str | None:
    data = (job.listing or {}).get("data") or {}
    offer_id = data.get("offer_id") if isinstance(data, dict) else None
    return str(offer_id) if offer_id else None


def _safe_json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    errors = _safe_json(response).get("errors")
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _error_ids(response: httpx.Response) -> set[int]:
    return {e["errorId"] for e in _errors(response) if isinstance(e.get("errorId"), int)}


def _existing_offer_id(response: httpx.Response) -> str | None:
    """The offerId that a refused create names when the SKU already has an offer."""
    for entry in _errors(response):
        if entry.get("errorId") != USER_ERROR:
            continue
        for parameter in entry.get("parameters") or []:
            if isinstance(parameter, dict) and parameter.get("name") == "offerId" and parameter.get("value"):
                return str(parameter["value"])
    return None


def _is_not_published(response: httpx.Response) -> bool:
    """Whether a refused withdraw means the offer has no live listing (withdrawn or never published)."""
    if OFFER_NOT_AVAILABLE in _error_ids(response):
        return True
    return any("not published" in str(e.get("message", "")).lower() for e in _errors(response))
