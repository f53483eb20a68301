"""Models of the `public` schema: tenants, users, auth tokens, quotas, idempotency records."""

from __future__ import annotations

import uuid
from datetime import datetime
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
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from persistence.base import CoreBase, created_at_column


class SubscriptionQuota(CoreBase):
    __tablename__ = "subscription_quotas"
    __table_args__ = {"schema": "public"}

    tier: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: None means unlimited.
    max_products: Mapped[int | None] = mapped_column(Integer)
    max_platforms: Mapped[int] = mapped_column(Integer, nullable=False)
    ai_credits_monthly: Mapped[int] = mapped_column(Integer, nullable=False)


class Tenant(CoreBase):
    __tablename__ = "tenants"
    __table_args__ = {"schema": "public"}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    tier: Mapped[str] = mapped_column(ForeignKey("public.subscription_quotas.tier"), nullable=False)
    created_at: Mapped[datetime] = created_at_column()


class User(CoreBase):
    __tablename__ = "users"
    __table_args__ = (
        Index("uq_users_email_lower", func.lower(text("email")), unique=True),
        # Operators run the platform: they belong to no tenant, and every tenant user belongs to one.
        CheckConstraint("(role = 'operator') = (tenant_id IS NULL)", name="operator_without_tenant"),
        {"schema": "public"},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: None for an operator (role `operator`), never for a tenant's user.
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("public.tenants.id", ondelete="CASCADE"), nullable=True, index=True
    )
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(100), nullable=False)
    full_name: Mapped[str | None] = mapped_column(String(200))
    business_name: Mapped[str | None] = mapped_column(String(200))
    account_type: Mapped[str] = mapped_column(String(20), nullable=False, server_default="individual")
    language: Mapped[str] = mapped_column(String(2), nullable=False, server_default="fr")
    country: Mapped[str | None] = mapped_column(String(2))
    role: Mapped[str] = mapped_column(String(10), nullable=False, server_default="admin")
    created_at: Mapped[datetime] = created_at_column()


class LoginSession(CoreBase):
    """One login: the chain of refresh tokens that descend from it."""

    __tablename__ = "login_sessions"
    __table_args__ = {"schema": "public"}

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("public.users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    source: Mapped[str] = mapped_column(String(10), nullable=False)
    created_at: Mapped[datetime] = created_at_column(index=True)
    #: Set when a spent refresh token was presented again: the whole chain is then dead.
    compromised_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Set by logout: the login's refresh and access tokens are refused from then on.
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RefreshToken(CoreBase):
    __tablename__ = "refresh_tokens"
    __table_args__ = {"schema": "public"}

    jti: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("public.login_sessions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_at: Mapped[datetime] = created_at_column()
    #: Set when the token was exchanged for a new pair.
    spent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Set by logout or by reuse detection on the chain.
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IdempotencyRecord(CoreBase):
    """The first 2xx answer to a command sent with an `Idempotency-Key`, replayed for 24 h."""

    __tablename__ = "idempotency_keys"
    __table_args__ = {"schema": "public"}

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("public.tenants.id", ondelete="CASCADE"), primary_key=True
    )
    method: Mapped[str] = mapped_column(String(10), primary_key=True)
    path: Mapped[str] = mapped_column(Text, primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    status_code: Mapped[int] = mapped_column(Integer, nullable=False)
    headers: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    body: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = created_at_column(index=True)


class TenantWork(CoreBase):
    """Tenants that have queue rows to look at: lets the dispatcher's sweep skip idle schemas."""

    __tablename__ = "tenant_work"
    __table_args__ = (Index("ix_tenant_work_due", "due_at"), {"schema": "public"})

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("public.tenants.id", ondelete="CASCADE"), primary_key=True
    )
    since: Mapped[datetime] = created_at_column()
    version: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    #: When the sweep must next look at this tenant (a retry due, a lease or a plugin wait expiring).
    due_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class TenantFailure(CoreBase):
    """Tenants that have had a job fail: the operator's failure list visits only these schemas."""

    __tablename__ = "tenant_failures"
    __table_args__ = {"schema": "public"}

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("public.tenants.id", ondelete="CASCADE"), primary_key=True
    )
    last_failed_at: Mapped[datetime] = created_at_column()


class VintedRequestLog(CoreBase):
    """Every plugin task's requests, per Vinted member: the budget's durable record across tenants.

    Redis holds the fast sliding window; this table is what survives Redis and what gates the hand-out
    to plugins (at most the limit's requests of one member handed out in any window).
    """

    __tablename__ = "vinted_request_log"
    __table_args__ = (
        Index("ix_vinted_request_log_released", "member", "released_at"),
        Index("ix_vinted_request_log_handed", "member", "handed_at"),
        {"schema": "public"},
    )

    task_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    member: Mapped[str] = mapped_column(String(32), nullable=False)
    tenant_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    slots: Mapped[int] = mapped_column(Integer, nullable=False)
    released_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    handed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: a sale check's request: counted against the checks' share of the member's budget too
    sale_check: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))


class AiCredits(CoreBase):
    """A tenant's AI credits left in its current billing period (see domain/ai_credits.py)."""

    __tablename__ = "ai_credits"
    __table_args__ = {"schema": "public"}

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("public.tenants.id", ondelete="CASCADE"), primary_key=True
    )
    remaining: Mapped[int] = mapped_column(Integer, nullable=False)
    #: The billing period `remaining` belongs to; an older one means the allowance is due again.
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = created_at_column()


class MarketplaceDirectory(CoreBase):
    """Which tenant owns a marketplace's listing, shop or user: routes webhooks to a tenant."""

    __tablename__ = "marketplace_directory"
    __table_args__ = (Index("ix_marketplace_directory_tenant", "tenant_id"), {"schema": "public"})

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    #: `listing` (external listing id), `shop` (Etsy shop id), `user` (eBay user id)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = created_at_column()


class SaleCheck(CoreBase):
    """When each connected account's sale check is next due, and how far its last one read."""

    __tablename__ = "sale_checks"
    __table_args__ = (Index("ix_sale_checks_due", "platform", "due_at"), {"schema": "public"})

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    #: '' for eBay and Etsy (one account per tenant); the member id for Vinted
    account: Mapped[str] = mapped_column(String(32), primary_key=True, server_default="")
    due_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    #: the newest order time the last check covered (the next asks from here minus the overlap)
    checked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: order ids a webhook announced: a check that finds them records them as seen by the webhook
    hints: Mapped[list[Any]] = mapped_column(JSONB, nullable=False, server_default="[]")
    checks: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
