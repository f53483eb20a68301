"""Catalogue values the mappers read: a product as it stands, and our codes' marketplace mappings.

Both are immutable so that a mapper can be handed them from any worker without copying, and so that
a payload built twice from the same values is the same payload (retries must not drift).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType

#: (platform, attribute kind, our code), e.g. ("vinted", "brands", "levis").
MappingKey = tuple[str, str, str]

#: The nested shape of ops/config/reference_data/platform_mappings/*.json, keyed by platform on top.
NestedMappings = Mapping[str, Mapping[str, Mapping[str, Mapping[str, object]]]]


@dataclass(frozen=True, kw_only=True)
class ProductSnapshot:
    """A product's fields at the moment a job maps it (attribute fields hold attribute codes)."""

    id: int
    sku: str | None = None
    title: str
    description: str | None = None
    price: Decimal
    currency: str = "EUR"
    stock_quantity: int = 1
    category: str | None = None
    brand: str | None = None
    size: str | None = None
    color: str | None = None
    material: str | None = None
    fit: str | None = None
    gender: str | None = None
    season: str | None = None
    condition: str | None = None
    #: Free text: the size printed on the label, kept as the seller typed it.
    label_size: str | None = None
    decade: str | None = None
    closure: str | None = None
    #: Free text: notes on wear and defects that complement `condition`.
    condition_sup: str | None = None
    #: Free text: the maker's model name (e.g. "501").
    model: str | None = None
    origin: str | None = None
    pattern: str | None = None
    style: str | None = None
    dim1: Decimal | None = None
    dim2: Decimal | None = None
    dim3: Decimal | None = None
    dim4: Decimal | None = None
    dim5: Decimal | None = None
    dim6: Decimal | None = None
    #: Public image URLs in display order.
    image_urls: tuple[str, ...] = ()
    #: When the product was created: a marketplace listing older than the product cannot be its own
    #: (it was left behind by a deleted product that had the same SKU).
    created_at: datetime | None = None


@dataclass(frozen=True, eq=False)
class PlatformMappings:
    """Read-only lookup of our attribute codes' marketplace fields, keyed by (platform, kind, code)."""

    _entries: Mapping[MappingKey, Mapping[str, object]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Copy and wrap, so that neither the caller's dicts nor a mapper can change what was loaded.
        frozen = {key: MappingProxyType(dict(fields)) for key, fields in self._entries.items()}
        object.__setattr__(self, "_entries", MappingProxyType(frozen))

    @classmethod
    def from_nested(cls, nested: NestedMappings) -> PlatformMappings:
        """Build from `{platform: {kind: {code: fields}}}`, the shape of the reference data files."""
        return cls(
            {
                (platform, kind, code): fields
                for platform, kinds in nested.items()
                for kind, by_code in kinds.items()
                for code, fields in by_code.items()
            }
        )

    def lookup(self, platform: str, kind: str, code: str) -> Mapping[str, object] | None:
        """Return the fields mapped for one code on one platform, or None when there is no entry."""
        return self._entries.get((platform, kind, code))

    def entries(self, platform: str, kind: str) -> list[tuple[str, Mapping[str, object]]]:
        """Every (our code, fields) of one kind on one platform, in code order (for mapping back)."""
        return sorted(
            (code, fields)
            for (entry_platform, entry_kind, code), fields in self._entries.items()
            if entry_platform == platform and entry_kind == kind
        )

    def __len__(self) -> int:
        return len(self._entries)
