"""Read a product as the mappers see it (a domain ProductSnapshot)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.catalogue import ProductSnapshot
from persistence.tenant_models import Product, ProductImage

#: The product columns a snapshot carries (besides its id and images).
SNAPSHOT_FIELDS = (
    "sku",
    "title",
    "description",
    "price",
    "currency",
    "stock_quantity",
    "category",
    "brand",
    "size",
    "color",
    "material",
    "fit",
    "gender",
    "season",
    "condition",
    "label_size",
    "decade",
    "closure",
    "condition_sup",
    "model",
    "origin",
    "pattern",
    "style",
    "dim1",
    "dim2",
    "dim3",
    "dim4",
    "dim5",
    "dim6",
    "created_at",
)


def snapshot_of(
    product: Mapping[str, Any], image_keys: Sequence[str], image_url: Callable[[str], str]
) -> ProductSnapshot:
    """A snapshot from the product's columns as read (`id` and SNAPSHOT_FIELDS) and its image keys."""
    return ProductSnapshot(
        id=int(product["id"]),
        image_urls=tuple(image_url(key) for key in image_keys),
        **{name: product[name] for name in SNAPSHOT_FIELDS},
    )


async def load_product_snapshot(
    session: AsyncSession, product_id: int, image_url: Callable[[str], str]
) -> ProductSnapshot | None:
    """The product (even soft-deleted: a delist must still run) with its image URLs in display order."""
    product = await session.get(Product, product_id, populate_existing=True)
    if product is None:
        return None
    keys = await session.scalars(
        select(ProductImage.storage_key)
        .where(ProductImage.product_id == product_id)
        .order_by(ProductImage.display_order, ProductImage.id)
    )
    return ProductSnapshot(
        id=product.id,
        image_urls=tuple(image_url(key) for key in keys),
        **{name: getattr(product, name) for name in SNAPSHOT_FIELDS},
    )
