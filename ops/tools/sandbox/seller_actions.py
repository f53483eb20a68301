"""What sellers do on the marketplaces outside Stoflow, for tests and demos (sandbox control routes).

- Listings that existed before Stoflow, for imports: `POST /_sandbox/vinted/wardrobe` puts items in a
  member's wardrobe (with a photo each), `POST /_sandbox/ebay/inventory` puts inventory items with a
  published fixed-price offer in a seller's account. Both answer 201 with what was made.
- Listings ended by hand, for the sync: `POST /_sandbox/ebay/withdrawals` `{"listing_id"}` (the seller ends
  the listing in Seller Hub), `POST /_sandbox/etsy/deactivations` `{"listing_id"}` (deactivated in Shop
  Manager), `POST /_sandbox/vinted/deletions` `{"item_id"}` (deleted in the Vinted app). Each answers 201
  with the listing as it is now, or 404 when the sandbox has no such live listing.
"""

from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from ops.tools.sandbox import ebay, etsy, vinted
from ops.tools.sandbox.state import EbayOffer, JsonDict, VintedItem, state_of

router = APIRouter(prefix="/_sandbox", tags=["sandbox control"])


class WardrobeItem(BaseModel):
    """An item as the member listed it (ids from Vinted's catalogue, titles as Vinted shows them)."""

    title: str = Field(min_length=1, max_length=100)
    description: str = ""
    price: Decimal = Field(gt=0)
    currency: str = "EUR"
    catalog_id: int
    status_id: int
    brand_id: int | None = None
    brand_title: str | None = None
    size_id: int | None = None
    size_title: str | None = None
    color_ids: list[int] = Field(default_factory=list)
    package_size_id: int = 1


class WardrobeSeed(BaseModel):
    """Body of `POST /_sandbox/vinted/wardrobe`."""

    user_id: int
    items: list[WardrobeItem] = Field(max_length=1000)


class EbayListingSeed(BaseModel):
    """One listing of `POST /_sandbox/ebay/inventory`."""

    sku: str = Field(min_length=1, max_length=50)
    title: str = Field(min_length=1, max_length=80)
    description: str = ""
    aspects: dict[str, list[str]] = Field(default_factory=dict)
    condition: str = "USED_EXCELLENT"
    quantity: int = Field(1, ge=0)
    price: Decimal = Field(gt=0)
    currency: str = "EUR"
    category_id: str = "63861"
    image_urls: list[str] = Field(default_factory=list)


class EbayInventorySeed(BaseModel):
    """Body of `POST /_sandbox/ebay/inventory`: each entry an inventory item and its published offer."""

    account_id: str
    marketplace_id: str = "EBAY_FR"
    items: list[EbayListingSeed] = Field(max_length=1000)


class ListingRef(BaseModel):
    listing_id: str


class ItemRef(BaseModel):
    item_id: int


@router.post("/vinted/wardrobe", status_code=201)
async def seed_wardrobe(body: WardrobeSeed, request: Request) -> JsonDict:
    """Put items in a member's wardrobe, as if listed on Vinted before Stoflow (newest last)."""
    state = state_of(request)
    made: list[JsonDict] = []
    async with state.lock:
        for entry in body.items:
            photo_id = state.new_id(8_000_000_000)
            url = f"https://images1.vinted.net/sandbox/{photo_id}/f800/photo.jpeg"
            state.vinted.photos[photo_id] = {"id": photo_id, "url": url, "width": 600, "height": 800}
            state.vinted.photo_owner[photo_id] = body.user_id
            now = state.clock.now()
            fields = {
                "title": entry.title,
                "description": entry.description,
                "catalog_id": entry.catalog_id,
                "brand_id": entry.brand_id,
                "brand": entry.brand_title,
                "size_id": entry.size_id,
                "size_title": entry.size_title,
                "status_id": entry.status_id,
                "package_size_id": entry.package_size_id,
                "color_ids": entry.color_ids,
                "price": float(entry.price),
                "currency": entry.currency,
                "photo_ids": [photo_id],
                "is_unisex": False,
                "item_attributes": [],
                "measurement_length": None,
                "measurement_width": None,
            }
            item = VintedItem(
                state.new_id(4_000_000_000), body.user_id, fields, created_at=now, updated_at=now
            )
            state.vinted.items[item.item_id] = item
            made.append(vinted.item_view(state, item))
    return {"items": made}


@router.post("/ebay/inventory", status_code=201)
async def seed_ebay_inventory(body: EbayInventorySeed, request: Request) -> JsonDict:
    """Put inventory items with a published offer each in a seller's account, as if listed on eBay."""
    state = state_of(request)
    made: list[JsonDict] = []
    async with state.lock:
        seller = state.ebay.account(body.account_id)
        for entry in body.items:
            seller.inventory[entry.sku] = {
                "product": {
                    "title": entry.title,
                    "description": entry.description,
                    "aspects": entry.aspects,
                    "imageUrls": entry.image_urls,
                },
                "condition": entry.condition,
                "availability": {"shipToLocationAvailability": {"quantity": entry.quantity}},
                "locale": "fr_FR",
            }
            offer_id = str(state.new_id(9_000_000_000))
            offer = EbayOffer(
                offer_id,
                entry.sku,
                body.marketplace_id,
                "FIXED_PRICE",
                {
                    "availableQuantity": entry.quantity,
                    "categoryId": entry.category_id,
                    "pricingSummary": {"price": {"value": f"{entry.price:.2f}", "currency": entry.currency}},
                    "listingDescription": entry.description,
                },
                status="PUBLISHED",
                listing_id=str(state.new_id(110_000_000_000)),
                listing_status="ACTIVE",
            )
            seller.offers[offer_id] = offer
            made.append({"sku": entry.sku, "offer_id": offer_id, "listing_id": offer.listing_id})
    return {"items": made}


@router.post("/ebay/withdrawals", status_code=201)
async def withdraw_ebay_listing(body: ListingRef, request: Request) -> JsonDict:
    """The seller ends a live eBay listing in Seller Hub (Stoflow is not told)."""
    state = state_of(request)
    async with state.lock:
        for account in state.ebay.accounts.values():
            for offer in account.offers.values():
                if offer.listing_id == body.listing_id:
                    ebay.end_listing(offer)
                    return ebay.offer_view(offer)
    raise HTTPException(404, "no live eBay listing with that id")


@router.post("/etsy/deactivations", status_code=201)
async def deactivate_etsy_listing(body: ListingRef, request: Request) -> JsonDict:
    """The seller deactivates an active Etsy listing in Shop Manager."""
    state = state_of(request)
    async with state.lock:
        listing = state.etsy.listings.get(int(body.listing_id)) if body.listing_id.isdigit() else None
        if listing is None or listing.deleted or listing.fields.get("state") != "active":
            raise HTTPException(404, "no active Etsy listing with that id")
        listing.fields["state"] = "inactive"
        return etsy.listing_view(listing)


@router.post("/vinted/deletions", status_code=201)
async def delete_vinted_item(body: ItemRef, request: Request) -> JsonDict:
    """The member deletes an item in the Vinted app."""
    state = state_of(request)
    async with state.lock:
        item = state.vinted.items.get(body.item_id)
        if item is None or item.deleted:
            raise HTTPException(404, "no live Vinted item with that id")
        item.deleted = True
        item.updated_at = state.clock.now()
        return vinted.item_view(state, item)
