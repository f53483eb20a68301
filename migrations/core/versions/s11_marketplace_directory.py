"""The marketplace directory (which tenant owns a listing, shop or user) and the sale-check schedule.

A webhook names a marketplace's listing, shop or user, never our tenant: this public lookup table routes it
(one row per platform, kind and key; a cell directory later says where that tenant lives).

Revision ID: s11_marketplace_directory
Revises: h9_login_session_end
Create Date: 2026-12-02 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "s11_marketplace_directory"
down_revision: str | None = "h9_login_session_end"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "marketplace_directory",
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("platform", "kind", "key", name=op.f("pk_marketplace_directory")),
        schema="public",
    )
    op.create_index(
        "ix_marketplace_directory_tenant",
        "marketplace_directory",
        ["tenant_id"],
        unique=False,
        schema="public",
    )
    op.create_table(
        "sale_checks",
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("account", sa.String(length=32), server_default="", nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("checked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("hints", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
        sa.Column("checks", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("platform", "tenant_id", "account", name=op.f("pk_sale_checks")),
        schema="public",
    )
    op.create_index(
        "ix_sale_checks_due", "sale_checks", ["platform", "due_at"], unique=False, schema="public"
    )


def downgrade() -> None:
    op.drop_index("ix_sale_checks_due", table_name="sale_checks", schema="public")
    op.drop_table("sale_checks", schema="public")
    op.drop_index("ix_marketplace_directory_tenant", table_name="marketplace_directory", schema="public")
    op.drop_table("marketplace_directory", schema="public")
