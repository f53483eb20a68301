"""The products repository: reads and writes of the tenant's `products` table.

Every function takes the request's (or job's) tenant-scoped session and only flushes; the caller commits.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import QuotaExceeded, SkuTaken
from domain.lifecycle import LifecycleState, ProductStatus, StatusChange
from domain.products import generate_sku
from persistence.core_models import SubscriptionQuota, Tenant
from persistence.listings import ACTIVE_LISTING_STATES
from persistence.listings import listings_of as listing_rows
from persistence.tenant_models import PlatformListing, Product, ProductImage

Platform = Literal["vinted", "ebay", "etsy"]

#: High half of the advisory-lock key that serialises one tenant's product creations (low half: tenant id).
_PRODUCT_QUOTA_LOCK_CLASS = 0x5354_0001
_SKU_INDEX = "uq_products_sku_live"
_GENERATED_SKU_ATTEMPTS = 5


@dataclass(frozen=True)
class ProductFilters:
    """Filters of the product list; None means 'any'."""

    status: ProductStatus | None = None
    #: Case-insensitive substring of the title or the SKU, matched literally.
    q: str | None = None
    platform: Platform | None = None
    brand: str | None = None
    category: str | None = None


def lifecycle_state(product: Product) -> LifecycleState:
    """Map a product row to what the lifecycle rules need."""
    return LifecycleState(
        status=ProductStatus(product.status),
        stock_quantity=product.stock_quantity,
        deleted=product.deleted_at is not None,
        published_at=product.published_at,
        sold_at=product.sold_at,
    )


async def transaction_now(session: AsyncSession) -> datetime:
    """Return the transaction's timestamp, the same `now()` the table defaults use."""
    now: datetime | None = await session.scalar(select(func.now()))
    assert now is not None
    return now


async def _lock_product_creation(session: AsyncSession, tenant_id: int) -> None:
    # Held until commit: two racing creates at the quota limit count one after the other.
    key = (_PRODUCT_QUOTA_LOCK_CLASS << 32) | tenant_id
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


async def _max_products(session: AsyncSession, tenant_id: int) -> int | None:
    statement = (
        select(SubscriptionQuota.max_products)
        .join(Tenant, Tenant.tier == SubscriptionQuota.tier)
        .where(Tenant.id == tenant_id)
    )
    return (await session.execute(statement)).scalar_one()


async def count_live_products(session: AsyncSession) -> int:
    """Count the tenant's products that are not deleted (whatever their status)."""
    count = await session.scalar(
        select(func.count()).select_from(Product).where(Product.deleted_at.is_(None))
    )
    return int(count or 0)


async def sku_in_use(session: AsyncSession, sku: str, *, other_than: int | None = None) -> bool:
    """Tell whether a live product (other than `other_than`) already has this SKU."""
    statement = select(Product.id).where(Product.sku == sku, Product.deleted_at.is_(None))
    if other_than is not None:
        statement = statement.where(Product.id != other_than)
    return (await session.scalar(statement.limit(1))) is not None


def _is_sku_violation(error: IntegrityError) -> bool:
    return _SKU_INDEX in str(error.orig)


async def _insert(session: AsyncSession, values: Mapping[str, Any]) -> Product | None:
    """Insert a product in a savepoint; return None when its SKU was taken in the meantime."""
    product = Product(**values)
    try:
        async with session.begin_nested():
            session.add(product)
            await session.flush()
    except IntegrityError as error:
        if not _is_sku_violation(error):
            raise
        return None
    await session.refresh(product)
    return product


async def create_product(session: AsyncSession, tenant_id: int, values: Mapping[str, Any]) -> Product:
    """Insert a draft product after the SKU and quota checks; generate a SKU when none is given."""
    await _lock_product_creation(session, tenant_id)
    sku = values.get("sku")
    if sku is not None and await sku_in_use(session, sku):
        raise SkuTaken(f"Another product already has the SKU {sku!r}.", field="sku")
    limit = await _max_products(session, tenant_id)
    if limit is not None and await count_live_products(session) >= limit:
        raise QuotaExceeded(f"Your plan allows {limit} products; delete one or upgrade your plan.")
    row = {**values, "status": ProductStatus.DRAFT.value}
    if sku is not None:
        product = await _insert(session, row)
        if product is None:
            raise SkuTaken(f"Another product already has the SKU {sku!r}.", field="sku")
        return product
    for _ in range(_GENERATED_SKU_ATTEMPTS):
        product = await _insert(session, {**row, "sku": generate_sku(secrets.token_bytes(5))})
        if product is not None:
            return product
    raise RuntimeError("could not generate a free SKU")


async def get_live_product(
    session: AsyncSession, product_id: int, *, for_update: bool = False
) -> Product | None:
    """Return the product unless it is missing or soft-deleted; lock its row when about to change it."""
    statement = (
        select(Product)
        .where(Product.id == product_id, Product.deleted_at.is_(None))
        .execution_options(populate_existing=True)
    )
    if for_update:
        statement = statement.with_for_update()
    return (await session.scalars(statement)).one_or_none()


def like_pattern(fragment: str) -> str:
    """Return a LIKE pattern matching `fragment` literally anywhere (escape character: backslash)."""
    escaped = fragment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _listed_on(platform: Platform) -> ColumnElement[bool]:
    """Products with a live (or being published) listing on the platform."""
    return (
        select(PlatformListing.id)
        .where(
            PlatformListing.product_id == Product.id,
            PlatformListing.platform == str(platform),
            PlatformListing.status.in_(ACTIVE_LISTING_STATES),
        )
        .exists()
    )


async def list_products(
    session: AsyncSession, filters: ProductFilters, *, limit: int, before_id: int | None
) -> tuple[list[Product], bool]:
    """Return up to `limit` live products below `before_id`, newest first, and whether more follow."""
    statement = select(Product).where(Product.deleted_at.is_(None))
    if before_id is not None:
        statement = statement.where(Product.id < before_id)
    if filters.status is not None:
        statement = statement.where(Product.status == filters.status.value)
    if filters.brand is not None:
        statement = statement.where(Product.brand == filters.brand)
    if filters.category is not None:
        statement = statement.where(Product.category == filters.category)
    if filters.platform is not None:
        statement = statement.where(_listed_on(filters.platform))
    if filters.q is not None:
        # lower(col) LIKE lower(pattern) matches the trigram GIN indexes on lower(title) and lower(sku).
        pattern = func.lower(like_pattern(filters.q))
        statement = statement.where(
            or_(
                func.lower(Product.title).like(pattern, escape="\\"),
                func.lower(Product.sku).like(pattern, escape="\\"),
            )
        )
    rows = list((await session.scalars(statement.order_by(Product.id.desc()).limit(limit + 1))).all())
    return rows[:limit], len(rows) > limit


async def update_product(session: AsyncSession, product: Product, changes: Mapping[str, Any]) -> bool:
    """Apply the changed fields and bump the version; return False (writing nothing) if none differ."""
    changed = {field: value for field, value in changes.items() if getattr(product, field) != value}
    if not changed:
        return False
    sku = changed.get("sku")
    if sku is not None and await sku_in_use(session, sku, other_than=product.id):
        raise SkuTaken(f"Another product already has the SKU {sku!r}.", field="sku")
    for field, value in changed.items():
        setattr(product, field, value)
    product.version = product.version + 1
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as error:
        if sku is not None and _is_sku_violation(error):
            raise SkuTaken(f"Another product already has the SKU {sku!r}.", field="sku") from None
        raise
    await session.refresh(product)
    return True


async def apply_status_change(session: AsyncSession, product: Product, change: StatusChange) -> None:
    """Store a lifecycle transition and bump the version."""
    product.status = change.status.value
    product.published_at = change.published_at
    product.sold_at = change.sold_at
    product.version = product.version + 1
    await session.flush()
    await session.refresh(product)


async def soft_delete_product(session: AsyncSession, product: Product) -> None:
    """Mark the product deleted: it disappears from reads and frees its SKU."""
    product.deleted_at = await transaction_now(session)
    product.version = product.version + 1
    await session.flush()


async def images_of(session: AsyncSession, product_id: int) -> list[ProductImage]:
    """Return the product's images in display order."""
    statement = (
        select(ProductImage)
        .where(ProductImage.product_id == product_id)
        .order_by(ProductImage.display_order, ProductImage.id)
    )
    return list((await session.scalars(statement)).all())


async def listings_of(session: AsyncSession, product_id: int) -> list[dict[str, Any]]:
    """Return the product's marketplace listings as the API shows them."""
    return [
        {
            "platform": row.platform,
            "status": row.status,
            "external_id": row.external_id,
            "url": row.url,
            "published_at": row.published_at,
            "last_synced_at": row.last_synced_at,
        }
        for row in await listing_rows(session, product_id)
    ]
