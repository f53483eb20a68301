"""Models of the per-tenant schema (no schema name: the tenant transaction sets `search_path`)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from persistence.base import TenantBase, created_at_column, updated_at_column

PRODUCT_ATTRIBUTE_FIELDS: dict[str, str] = {
    # product field -> attribute kind it takes a code of
    "category": "categories",
    "brand": "brands",
    "size": "sizes",
    "label_size": "sizes",
    "color": "colors",
    "material": "materials",
    "fit": "fits",
    "gender": "genders",
    "season": "seasons",
    "condition": "conditions",
    "decade": "decades",
    "closure": "closures",
    "origin": "origins",
    "pattern": "patterns",
    "style": "styles",
}


class Product(TenantBase):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("price > 0", name="price_positive"),
        CheckConstraint("stock_quantity >= 0", name="stock_not_negative"),
        # Per-tenant unique SKU among live products; a soft-deleted product frees its SKU.
        Index("uq_products_sku_live", "sku", unique=True, postgresql_where=text("deleted_at IS NULL")),
        Index(
            "ix_products_title_trgm",
            func.lower(text("title")),
            postgresql_using="gin",
            postgresql_ops={"lower(title)": "public.gin_trgm_ops"},
        ),
        Index(
            "ix_products_sku_trgm",
            func.lower(text("sku")),
            postgresql_using="gin",
            postgresql_ops={"lower(sku)": "public.gin_trgm_ops"},
        ),
        Index("ix_products_live_id", "id", postgresql_where=text("deleted_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), nullable=False)
    title: Mapped[str] = mapped_column(String(100), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2), nullable=False)
    cost_price: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    currency: Mapped[str] = mapped_column(String(3), nullable=False, server_default="EUR")
    stock_quantity: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    category: Mapped[str | None] = mapped_column(String(64), index=True)
    brand: Mapped[str | None] = mapped_column(String(64), index=True)
    size: Mapped[str | None] = mapped_column(String(64))
    color: Mapped[str | None] = mapped_column(String(64))
    material: Mapped[str | None] = mapped_column(String(64))
    fit: Mapped[str | None] = mapped_column(String(64))
    gender: Mapped[str | None] = mapped_column(String(64))
    season: Mapped[str | None] = mapped_column(String(64))
    condition: Mapped[str | None] = mapped_column(String(64))
    label_size: Mapped[str | None] = mapped_column(String(64))
    decade: Mapped[str | None] = mapped_column(String(64))
    closure: Mapped[str | None] = mapped_column(String(64))
    condition_sup: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(200))
    origin: Mapped[str | None] = mapped_column(String(64))
    pattern: Mapped[str | None] = mapped_column(String(64))
    style: Mapped[str | None] = mapped_column(String(64))
    dim1: Mapped[Decimal | None] = mapped_column(Numeric(8, 1))
    dim2: Mapped[Decimal | None] = mapped_column(Numeric(8, 1))
    dim3: Mapped[Decimal | None] = mapped_column(Numeric(8, 1))
    dim4: Mapped[Decimal | None] = mapped_column(Numeric(8, 1))
    dim5: Mapped[Decimal | None] = mapped_column(Numeric(8, 1))
    dim6: Mapped[Decimal | None] = mapped_column(Numeric(8, 1))
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="draft", index=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    #: Imported values that could not be mapped to our attributes: {field: raw value}.
    needs_review: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sold_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ProductImage(TenantBase):
    __tablename__ = "product_images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), nullable=False, index=True
    )
    storage_key: Mapped[str] = mapped_column(String(200), nullable=False)
    display_order: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    content_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = created_at_column()
