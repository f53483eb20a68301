"""Platform rules a product must meet before a mapper builds its payload; each breach names its rule.

| rule                  | meaning                                                                  |
|-----------------------|--------------------------------------------------------------------------|
| price_positive        | price > 0 (every platform)                                               |
| price_minimum         | price at least the platform's floor (Vinted 1.00, Etsy 0.20)             |
| price_maximum         | price at most the platform's ceiling (Etsy 50,000)                       |
| quantity_at_least_one | stock ≥ 1: a listing with nothing to sell is delisted, never published   |
| quantity_maximum      | stock at most the platform's ceiling (Etsy 999)                          |
| currency_supported    | the product's currency is one the platform (or the account) sells in     |
| images_required       | at least one image (eBay and Vinted refuse a listing without one)        |
| text_length           | a description or note fits the platform's limit (never cut: see below)   |
| sku_format            | the SKU fits eBay's SKU syntax                                           |

Titles are cut to fit (see `truncate_title`); descriptions and condition notes are not, because a cut
can drop the sentence that discloses a defect.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from domain.catalogue import ProductSnapshot
from domain.mapping.common import PolicyViolation


@dataclass(frozen=True)
class ListingPolicy:
    """One platform's (or account's) limits on price, quantity and currency."""

    platform: str
    currencies: frozenset[str]
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    max_quantity: int | None = None


def check_listing_policy(product: ProductSnapshot, policy: ListingPolicy) -> None:
    """Raise PolicyViolation for the first price, quantity or currency rule the product breaks."""
    platform = policy.platform
    if product.price <= 0:
        raise PolicyViolation(
            "price_positive", platform, f"price {product.price} is not above 0", field="price"
        )
    if policy.min_price is not None and product.price < policy.min_price:
        raise PolicyViolation(
            "price_minimum", platform, f"price {product.price} is below {policy.min_price}", field="price"
        )
    if policy.max_price is not None and product.price > policy.max_price:
        raise PolicyViolation(
            "price_maximum", platform, f"price {product.price} is above {policy.max_price}", field="price"
        )
    check_quantity(product, platform, policy.max_quantity)
    if product.currency not in policy.currencies:
        accepted = ", ".join(sorted(policy.currencies))
        raise PolicyViolation(
            "currency_supported",
            platform,
            f"currency {product.currency} is not accepted here (accepted: {accepted})",
            field="currency",
        )


def check_quantity(product: ProductSnapshot, platform: str, max_quantity: int | None = None) -> None:
    """Raise PolicyViolation unless the stock is at least one and within the platform's ceiling."""
    if product.stock_quantity < 1:
        raise PolicyViolation(
            "quantity_at_least_one",
            platform,
            f"stock_quantity {product.stock_quantity} leaves nothing to sell",
            field="stock_quantity",
        )
    if max_quantity is not None and product.stock_quantity > max_quantity:
        raise PolicyViolation(
            "quantity_maximum",
            platform,
            f"stock_quantity {product.stock_quantity} is above {max_quantity}",
            field="stock_quantity",
        )


def check_images(product: ProductSnapshot, platform: str) -> None:
    """Raise PolicyViolation when the product has no image to show."""
    if not product.image_urls:
        raise PolicyViolation("images_required", platform, "the product has no image", field="images")


def check_text_length(text: str, limit: int, platform: str, field: str) -> None:
    """Raise PolicyViolation when a text the platform limits is too long."""
    if len(text) > limit:
        raise PolicyViolation(
            "text_length",
            platform,
            f"{field} has {len(text)} characters, over the {limit} allowed",
            field=field,
        )
