"""Models of the per-tenant schema (no schema name: the tenant transaction sets `search_path`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from persistence.base import TenantBase, created_at_column, updated_at_column


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
    #: A sale arrived when no stock was left (see `sales.took_stock`).
    oversold: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
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


class QueueJob(TenantBase):
    """A command waiting for, or done by, a worker pool (the API's `job`)."""

    __tablename__ = "plugin_queue"
    __table_args__ = (
        # The sweep only ever looks at unfinished rows; keep that index small.
        Index(
            "ix_plugin_queue_unfinished",
            "status",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending','queued','running','rate_limited','waiting_plugin')"),
        ),
        Index("ix_plugin_queue_product", "product_id", "platform"),
        Index("ix_plugin_queue_created", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="SET NULL"))
    platform: Mapped[str] = mapped_column(String(16), nullable=False)
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    #: Executions that counted against max_attempts (a rate-limit deferral gives its attempt back).
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    max_attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="5")
    #: Every claim increments it; the ARQ job id is `{id}:{runs + 1}`, and only that run may claim.
    runs: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    #: Marketplace steps already done (e.g. the eBay offer id), saved before the next step starts.
    progress: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    handed_off_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The product went away while this publish was in flight: its listing comes down as soon as it lands.
    delist_on_landing: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class PlatformListing(TenantBase):
    """A product's listing on one platform (one row per product and platform, reused on republish)."""

    __tablename__ = "platform_listings"
    __table_args__ = (Index("uq_platform_listings_product_platform", "product_id", "platform", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), nullable=False)
    platform: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    external_id: Mapped[str | None] = mapped_column(String(100), index=True)
    url: Mapped[str | None] = mapped_column(Text)
    vinted_account_id: Mapped[int | None] = mapped_column(Integer)
    #: Platform references we need later (e.g. the eBay offer id to withdraw).
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class Sale(TenantBase):
    """One sale of a product, seen once whichever source saw it first (keyed by platform + order)."""

    __tablename__ = "sales"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        Index("uq_sales_platform_order", "platform", "order_id", unique=True),
        Index("ix_sales_product", "product_id", "detected_at"),
        Index("ix_sales_detected", "detected_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), nullable=False)
    platform: Mapped[str] = mapped_column(String(16), nullable=False)
    order_id: Mapped[str] = mapped_column(String(100), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    source: Mapped[str] = mapped_column(String(16), nullable=False)
    #: False when the stock was already gone: the sale is kept and the product is oversold.
    took_stock: Mapped[bool] = mapped_column(Boolean, nullable=False)
    sold_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    detected_at: Mapped[datetime] = created_at_column()


class PublicationHistory(TenantBase):
    """One row per attempt of a publication job."""

    __tablename__ = "publications_history"
    __table_args__ = (Index("ix_publications_history_product", "product_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False, index=True)
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(16), nullable=False)
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    error_message: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at_column()


class MarketplaceCredential(TenantBase):
    """A connected eBay or Etsy account: tokens encrypted at rest, non-secret settings in clear."""

    __tablename__ = "marketplace_credentials"

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    encrypted_tokens: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")
    connected_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class VintedAccount(TenantBase):
    __tablename__ = "vinted_accounts"
    __table_args__ = (Index("uq_vinted_accounts_user", "vinted_user_id", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vinted_user_id: Mapped[str] = mapped_column(String(32), nullable=False)
    username: Mapped[str] = mapped_column(String(100), nullable=False)
    created_at: Mapped[datetime] = created_at_column()


class PluginTask(TenantBase):
    """One Vinted operation the browser plugin performs with the user's session (ordered requests)."""

    __tablename__ = "plugin_tasks"
    __table_args__ = (
        Index("ix_plugin_tasks_ready", "created_at", postgresql_where=text("finished_at IS NULL")),
        Index("ix_plugin_tasks_job", "job_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    vinted_account_id: Mapped[int] = mapped_column(Integer, nullable=False)
    operation: Mapped[str] = mapped_column(String(32), nullable=False)
    requests: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False)
    #: The current lease; None until the plugin first claims the task.
    lease_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Every lease ever issued: a result is accepted from any of them while the task is unfinished.
    leases: Mapped[list[str]] = mapped_column(JSONB, nullable=False, server_default="[]")
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The Vinted member whose budget the task spends (whichever account row names it).
    vinted_user_id: Mapped[str | None] = mapped_column(String(32))
    #: Requests in the task: the slots of the member's budget it spends.
    slots: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    #: First hand-out to a plugin (the moment its requests may reach Vinted).
    handed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The job stopped waiting for it (cancelled, expired): finished without a result.
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class AiCreditCharge(TenantBase):
    """The credit one `generate_description` job took: refunded at most once, if the job fails."""

    __tablename__ = "ai_credit_charges"

    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    credits: Mapped[int] = mapped_column(Integer, nullable=False)
    #: The billing period the credit came from: a refund after the period ended gives nothing back.
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    charged_at: Mapped[datetime] = created_at_column()
    refunded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AiGenerationLog(TenantBase):
    """One call to a description provider: who wrote it, what it cost, how it went."""

    __tablename__ = "ai_generation_log"
    __table_args__ = (Index("ix_ai_generation_log_job", "job_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    product_id: Mapped[int | None] = mapped_column(Integer)
    provider: Mapped[str] = mapped_column(String(32), nullable=False)
    model: Mapped[str | None] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(2), nullable=False)
    prompt_tokens: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    latency_ms: Mapped[int] = mapped_column(Integer, nullable=False)
    cost: Mapped[Decimal] = mapped_column(Numeric(12, 6), nullable=False, server_default="0")
    #: succeeded, invalid_output, policy_violation, provider_error
    outcome: Mapped[str] = mapped_column(String(32), nullable=False)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
