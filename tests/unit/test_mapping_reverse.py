"""Mapping back: marketplace listings -> product fields; what does not map is kept for review."""

from __future__ import annotations

from decimal import Decimal

from domain.catalogue import PlatformMappings
from domain.mapping.ebay import ebay_listing_from
from domain.mapping.reverse import map_back
from domain.mapping.vinted import vinted_listing_from
from ops.config.reference_data import load_platform_mappings

MAPPINGS = PlatformMappings.from_nested(load_platform_mappings())


def _wardrobe_item(**changes: object) -> dict[str, object]:
    item: dict[str, object] = {
        "id": 4000000123,
        "title": "Robe Zara bleue",
        "description": "Portée deux fois.",
        "catalog_id": 10,
        "brand_id": 12,
        "brand_title": "Zara",
        "size_id": 4,
        "size_title": "M",
        "status_id": 2,
        "color_ids": [9],
        "price": {"amount": "24.90", "currency_code": "EUR"},
        "photos": [{"id": 8000000001, "url": "https://images1.vinted.net/x.jpeg"}],
        "url": "https://www.vinted.fr/items/4000000123-robe",
    }
    return item | changes


def test_a_vinted_item_maps_back_to_our_codes() -> None:
    imported = map_back(vinted_listing_from(_wardrobe_item(size_id=1227, size_title="52")), MAPPINGS)
    assert imported.needs_review == {}
    assert imported.fields == {
        "title": "Robe Zara bleue",
        "description": "Portée deux fois.",
        "price": Decimal("24.90"),
        "currency": "EUR",
        "stock_quantity": 1,
        "category": "women_dresses",
        "brand": "zara",
        "size": "fr_52",
        "condition": "very_good",
        "color": "blue",
    }


def test_unknown_values_are_listed_for_review_in_the_marketplaces_words() -> None:
    item = _wardrobe_item(brand_id=None, brand_title="Marque du grenier", catalog_id=999999, color_ids=[9, 1])
    imported = map_back(vinted_listing_from(item), MAPPINGS)
    assert imported.needs_review == {
        "brand": "Marque du grenier",
        "category": "Vinted catalogue 999999",
        "colors": "Vinted colour 1",
        # without its catalogue, size id 4 is M in one size group and something else in others
        "size": "M",
    }
    assert "brand" not in imported.fields and "category" not in imported.fields
    assert imported.fields["color"] == "blue"


def test_a_size_id_that_several_of_our_sizes_share_is_left_for_review() -> None:
    # Vinted's women's size 4 is our m, fr_38 and uk_10 alike: which one the seller meant is theirs to say.
    imported = map_back(vinted_listing_from(_wardrobe_item()), MAPPINGS)
    assert imported.needs_review == {"size": "M"}
    assert imported.fields["category"] == "women_dresses" and "size" not in imported.fields


def test_an_ebay_value_that_several_of_our_codes_carry_is_not_guessed() -> None:
    item = {
        "sku": "OLD-1",
        "product": {
            "title": "Jean Levi's 501",
            "description": "Bon état",
            "aspects": {"Brand": ["Inconnue & Co"], "Department": ["Women"], "Color": ["Black"]},
            "imageUrls": ["https://i.ebayimg.com/1.jpg"],
        },
        "condition": "USED_EXCELLENT",
        "availability": {"shipToLocationAvailability": {"quantity": 3}},
    }
    offer = {
        "offerId": "9001",
        "categoryId": "63861",
        "pricingSummary": {"price": {"value": "35.00", "currency": "EUR"}},
        "listing": {"listingId": "110001"},
    }
    listing = ebay_listing_from(item, offer, "https://www.ebay.fr/itm/110001")
    assert (listing.external_id, listing.sku, listing.quantity) == ("110001", "OLD-1", 3)
    imported = map_back(listing, MAPPINGS)
    assert imported.fields["category"] == "women_dresses"
    assert imported.fields["gender"] == "women" and imported.fields["condition"] == "good"
    assert imported.fields["price"] == Decimal("35.00") and imported.fields["stock_quantity"] == 3
    assert imported.needs_review["brand"] == "Inconnue & Co"
    carriers = [
        code for code, fields in MAPPINGS.entries("ebay", "colors") if fields.get("aspect") == "Black"
    ]
    if len(carriers) == 1:
        assert imported.fields["color"] == carriers[0]
    else:
        assert imported.needs_review["color"] == "Black"
