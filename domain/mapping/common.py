"""What every platform mapper shares: its errors, title and price formatting, and mapping lookups.

Errors (all `domain.errors.DomainError`; workers turn `code` into the job's `error.code`)::

    DomainError
    ├── MappingMissing     mapping_missing    a needed attribute is unset, or its code has no entry
    │                                         for the platform (names attribute and platform)
    ├── NotEligible        not_eligible       the platform does not take this kind of product at all
    └── PolicyViolation    policy_violation   a platform rule is broken (names the rule)

A mapping entry's `verified` flag is data quality, not permission: unverified ids map like verified
ones. What never happens is a guessed or default marketplace id standing in for a missing one.

An entry `{"none": reason}` records that the marketplace has no equivalent (or that none could be
found in public material): it maps to MappingMissing carrying that reason, so the seller reads why.
An entry whose id depends on who the item is for carries `<field>_by_gender` (`{gender code: id}`):
Vinted and eBay file kids' items under girls, boys or baby, so the product's gender picks the id.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import TypeVar

from domain.attributes import PRODUCT_ATTRIBUTE_FIELDS
from domain.catalogue import PlatformMappings, ProductSnapshot
from domain.errors import DomainError

T = TypeVar("T", int, str)

#: Product field -> attribute kind of the reference data and of the platform mapping files.
ATTRIBUTE_KINDS = PRODUCT_ATTRIBUTE_FIELDS

#: The roots of our category tree; every category code starts with its root and an underscore.
CATEGORY_ROOTS: frozenset[str] = frozenset({"women", "men", "kids"})

_CENT = Decimal("0.01")
# Left at the end of a cut title these read as an unfinished phrase ("Robe Zara -", "Jean W32 /").
# `%`, `)` and quotes stay: "100%" and "(vintage)" are complete.
_TRAILING_PUNCTUATION = " ,;:.-\u2013\u2014/\\|&+\u00b7\u2022([{_*"


class MappingMissing(DomainError):
    """A platform needs an attribute that is unset, or whose code has no mapping for that platform."""

    code = "mapping_missing"

    def __init__(self, attribute: str, platform: str, value: str | None = None, reason: str = "") -> None:
        if value is None:
            detail = f"{platform} needs the product's {attribute}, which is not set"
        else:
            detail = f"{attribute} {value!r} has no {platform} mapping"
        if reason:
            detail = f"{detail} ({reason})"
        super().__init__(detail, field=attribute)
        self.attribute = attribute
        self.platform = platform
        self.value = value


class NotEligible(DomainError):
    """The platform does not accept this product at all (e.g. recent second-hand goods on Etsy)."""

    code = "not_eligible"

    def __init__(self, platform: str, reason: str, *, field: str | None = None) -> None:
        super().__init__(f"not eligible for {platform}: {reason}", field=field)
        self.platform = platform
        self.reason = reason


class PolicyViolation(DomainError):
    """A platform rule on price, quantity, currency, text length or images is broken."""

    code = "policy_violation"

    def __init__(self, rule: str, platform: str, detail: str, *, field: str | None = None) -> None:
        super().__init__(f"{platform} rule {rule}: {detail}", field=field)
        self.rule = rule
        self.platform = platform


def truncate_title(title: str, limit: int) -> str:
    """Fit a title in `limit` characters, cutting at a word boundary without trailing punctuation.

    Whitespace runs collapse to one space first (marketplaces show titles on one line). A word is cut
    through only when the first word alone is longer than the limit.
    """
    if limit < 1:
        raise ValueError("a title limit must be at least 1")
    text = " ".join(title.split())
    if len(text) <= limit:
        return text
    # Look one character past the limit: a space there means the limit falls exactly between words.
    boundary = text.rfind(" ", 0, limit + 1)
    if boundary > 0:
        words = text[:boundary].rstrip(_TRAILING_PUNCTUATION)
        if words:
            return words
    hard_cut = text[:limit]
    return hard_cut.rstrip(_TRAILING_PUNCTUATION) or hard_cut


def format_price(amount: Decimal) -> str:
    """Render money as a 2-place decimal string ("19.90"), rounding half up like a till."""
    return str(amount.quantize(_CENT, rounding=ROUND_HALF_UP))


def price_number(amount: Decimal) -> float:
    """Render money as a JSON number for APIs that take one; rounded to cents before leaving Decimal."""
    return float(amount.quantize(_CENT, rounding=ROUND_HALF_UP))


def listing_description(product: ProductSnapshot) -> str:
    """Return the description to publish: the product's own, else its title.

    Every platform we publish to refuses an empty description. Falling back on the title keeps a
    publish from failing over a field the seller may fill later (an AI description job can), and it
    invents nothing about the item.
    """
    description = (product.description or "").strip()
    return description or " ".join(product.title.split())


def listing_sku(product: ProductSnapshot) -> str:
    """Return the SKU a marketplace keys the listing by: the product's own, else one derived from its id.

    The fallback is deterministic, so a retried publish finds the listing it already created.
    """
    return product.sku or f"stoflow-{product.id}"


def category_root(category: str) -> str | None:
    """Name the root (`women`, `men`, `kids`) a category code sits under, or None if it has none."""
    root = category.split("_", 1)[0]
    return root if root in CATEGORY_ROOTS else None


def mapping_entry(
    mappings: PlatformMappings, platform: str, attribute: str, code: str | None
) -> Mapping[str, object]:
    """Return an attribute's mapping entry, or raise MappingMissing (unset, no entry, or marked `none`)."""
    if code is None:
        raise MappingMissing(attribute, platform)
    fields = mappings.lookup(platform, ATTRIBUTE_KINDS[attribute], code)
    if fields is None:
        raise MappingMissing(attribute, platform, code)
    reason = fields.get("none")
    if isinstance(reason, str):
        raise MappingMissing(attribute, platform, code, reason)
    return fields


def mapped_field(
    mappings: PlatformMappings,
    platform: str,
    attribute: str,
    code: str | None,
    field_name: str,
    expected: type[T],
) -> T:
    """Return one field of an attribute's mapping, or raise MappingMissing naming attribute and platform."""
    fields = mapping_entry(mappings, platform, attribute, code)
    value = fields.get(field_name)
    # bool is an int subclass, and an empty string is no value: neither is a usable id.
    if not isinstance(value, expected) or isinstance(value, bool) or value == "":
        raise MappingMissing(attribute, platform, code, f"its mapping has no {field_name}")
    return value


def gendered_field(
    mappings: PlatformMappings,
    platform: str,
    attribute: str,
    product: ProductSnapshot,
    field_name: str,
    expected: type[T],
) -> T:
    """Return a field of the attribute's mapping, or its `<field>_by_gender` id for the product's gender."""
    code = getattr(product, attribute)
    fields = mapping_entry(mappings, platform, attribute, code)
    by_gender = fields.get(f"{field_name}_by_gender")
    if not isinstance(by_gender, Mapping):
        return mapped_field(mappings, platform, attribute, code, field_name, expected)
    if product.gender is None:
        reason = f"{platform} files {attribute} {code!r} by gender ({', '.join(by_gender)})"
        raise MappingMissing("gender", platform, None, reason)
    value = by_gender.get(product.gender)
    if not isinstance(value, expected) or isinstance(value, bool) or value == "":
        raise MappingMissing(
            "gender",
            platform,
            product.gender,
            f"{platform} has no {attribute} {code!r} for it; it takes {', '.join(by_gender)}",
        )
    return value


def optional_mapped_field(
    mappings: PlatformMappings,
    platform: str,
    attribute: str,
    code: str | None,
    field_name: str,
    expected: type[T],
) -> T | None:
    """Like `mapped_field`, but an unset attribute is None; a set one must still map."""
    if code is None:
        return None
    return mapped_field(mappings, platform, attribute, code, field_name, expected)
