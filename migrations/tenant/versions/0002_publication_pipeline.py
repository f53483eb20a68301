"""Publication pipeline: the job queue, listings, history, marketplace accounts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 07:52:55.730021
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "marketplace_credentials",
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("encrypted_tokens", sa.LargeBinary(), nullable=False),
        sa.Column("settings", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column(
            "connected_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("platform", name=op.f("pk_marketplace_credentials")),
    )
    op.create_table(
        "vinted_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("vinted_user_id", sa.String(length=32), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vinted_accounts")),
    )
    op.create_index("uq_vinted_accounts_user", "vinted_accounts", ["vinted_user_id"], unique=True)
    op.create_table(
        "platform_listings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("vinted_account_id", sa.Integer(), nullable=True),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_platform_listings_product_id_products"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_listings")),
    )
    op.create_index(
        op.f("ix_platform_listings_external_id"), "platform_listings", ["external_id"], unique=False
    )
    op.create_index(
        "uq_platform_listings_product_platform", "platform_listings", ["product_id", "platform"], unique=True
    )
    op.create_table(
        "plugin_queue",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=True),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default="5", nullable=False),
        sa.Column("runs", sa.Integer(), server_default="0", nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column("progress", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("handed_off_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_plugin_queue_product_id_products"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plugin_queue")),
    )
    op.create_index("ix_plugin_queue_created", "plugin_queue", ["created_at", "id"], unique=False)
    op.create_index("ix_plugin_queue_product", "plugin_queue", ["product_id", "platform"], unique=False)
    op.create_index(
        "ix_plugin_queue_unfinished",
        "plugin_queue",
        ["status", "next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending','queued','running','rate_limited','waiting_plugin')"),
    )
    op.create_table(
        "publications_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=True),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_publications_history_product_id_products"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_publications_history")),
    )
    op.create_index(op.f("ix_publications_history_job_id"), "publications_history", ["job_id"], unique=False)
    op.create_index(
        "ix_publications_history_product", "publications_history", ["product_id", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_publications_history_product", table_name="publications_history")
    op.drop_index(op.f("ix_publications_history_job_id"), table_name="publications_history")
    op.drop_table("publications_history")
    op.drop_index(
        "ix_plugin_queue_unfinished",
        table_name="plugin_queue",
        postgresql_where=sa.text("status IN ('pending','queued','running','rate_limited','waiting_plugin')"),
    )
    op.drop_index("ix_plugin_queue_product", table_name="plugin_queue")
    op.drop_index("ix_plugin_queue_created", table_name="plugin_queue")
    op.drop_table("plugin_queue")
    op.drop_index("uq_platform_listings_product_platform", table_name="platform_listings")
    op.drop_index(op.f("ix_platform_listings_external_id"), table_name="platform_listings")
    op.drop_table("platform_listings")
    op.drop_index("uq_vinted_accounts_user", table_name="vinted_accounts")
    op.drop_table("vinted_accounts")
    op.drop_table("marketplace_credentials")
