"""Core schema: public and product_attributes.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 07:47:53.970228
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Trigram indexes back the case-insensitive product search in every tenant schema. Some servers (the
    # embedded one) lack the extension: search then works unindexed.
    op.execute(
        "DO $$ BEGIN "
        "IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN "
        "CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public; END IF; END $$"
    )
    op.create_table(
        "brands",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("name_fr", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_brands")),
        schema="product_attributes",
    )
    op.create_table(
        "categories",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("name_fr", sa.String(length=200), nullable=False),
        sa.Column("parent", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["parent"], ["product_attributes.categories.code"], name=op.f("fk_categories_parent_categories")
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_categories")),
        schema="product_attributes",
    )
    op.create_index(
        op.f("ix_product_attributes_categories_parent"),
        "categories",
        ["parent"],
        unique=False,
        schema="product_attributes",
    )
    op.create_table(
        "closures",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("name_fr", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_closures")),
        schema="product_attributes",
    )
    op.create_table(
        "colors",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("name_fr", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_colors")),
        schema="product_attributes",
    )
    op.create_table(
        "conditions",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("name_fr", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_conditions")),
        schema="product_attributes",
    )
    op.create_table(
        "decades",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("name_fr", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_decades")),
        schema="product_attributes",
    )
    op.create_table(
        "fits",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("name_fr", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_fits")),
        schema="product_attributes",
    )
    op.create_table(
        "genders",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("name_fr", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_genders")),
        schema="product_attributes",
    )
    op.create_table(
        "materials",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("name_fr", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_materials")),
        schema="product_attributes",
    )
    op.create_table(
        "origins",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("name_fr", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_origins")),
        schema="product_attributes",
    )
    op.create_table(
        "patterns",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("name_fr", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_patterns")),
        schema="product_attributes",
    )
    op.create_table(
        "seasons",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("name_fr", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_seasons")),
        schema="product_attributes",
    )
    op.create_table(
        "sizes",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("name_fr", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_sizes")),
        schema="product_attributes",
    )
    op.create_table(
        "styles",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("name_fr", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_styles")),
        schema="product_attributes",
    )
    op.create_table(
        "platform_mappings",
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("fields", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("verified", sa.Boolean(), server_default="false", nullable=False),
        sa.PrimaryKeyConstraint("platform", "kind", "code", name=op.f("pk_platform_mappings")),
        schema="public",
    )
    op.create_table(
        "subscription_quotas",
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("max_products", sa.Integer(), nullable=True),
        sa.Column("max_platforms", sa.Integer(), nullable=False),
        sa.Column("ai_credits_monthly", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tier", name=op.f("pk_subscription_quotas")),
        schema="public",
    )
    op.create_table(
        "tenants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tier"], ["public.subscription_quotas.tier"], name=op.f("fk_tenants_tier_subscription_quotas")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        schema="public",
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["public.tenants.id"],
            name=op.f("fk_idempotency_keys_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "method", "path", "key", name=op.f("pk_idempotency_keys")),
        schema="public",
    )
    op.create_table(
        "tenant_work",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["public.tenants.id"],
            name=op.f("fk_tenant_work_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_tenant_work")),
        schema="public",
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=100), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=True),
        sa.Column("business_name", sa.String(length=200), nullable=True),
        sa.Column("account_type", sa.String(length=20), server_default="individual", nullable=False),
        sa.Column("language", sa.String(length=2), server_default="fr", nullable=False),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("role", sa.String(length=10), server_default="admin", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["public.tenants.id"], name=op.f("fk_users_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        schema="public",
    )
    op.create_index(op.f("ix_public_users_tenant_id"), "users", ["tenant_id"], unique=False, schema="public")
    op.create_index(
        "uq_users_email_lower", "users", [sa.literal_column("lower(email)")], unique=True, schema="public"
    )
    op.create_table(
        "login_sessions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("compromised_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["public.users.id"], name=op.f("fk_login_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_sessions")),
        schema="public",
    )
    op.create_index(
        op.f("ix_public_login_sessions_user_id"), "login_sessions", ["user_id"], unique=False, schema="public"
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("jti", sa.UUID(), nullable=False),
        sa.Column("session_id", sa.UUID(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("spent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["public.login_sessions.id"],
            name=op.f("fk_refresh_tokens_session_id_login_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_refresh_tokens")),
        schema="public",
    )
    op.create_index(
        op.f("ix_public_refresh_tokens_session_id"),
        "refresh_tokens",
        ["session_id"],
        unique=False,
        schema="public",
    )
    quotas = sa.table(
        "subscription_quotas",
        sa.column("tier", sa.String),
        sa.column("max_products", sa.Integer),
        sa.column("max_platforms", sa.Integer),
        sa.column("ai_credits_monthly", sa.Integer),
        schema="public",
    )
    op.bulk_insert(
        quotas,
        [
            {"tier": "free", "max_products": 100, "max_platforms": 2, "ai_credits_monthly": 20},
            {"tier": "pro", "max_products": 2000, "max_platforms": 3, "ai_credits_monthly": 500},
            {"tier": "business", "max_products": None, "max_platforms": 3, "ai_credits_monthly": 2000},
        ],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_public_refresh_tokens_session_id"), table_name="refresh_tokens", schema="public")
    op.drop_table("refresh_tokens", schema="public")
    op.drop_index(op.f("ix_public_login_sessions_user_id"), table_name="login_sessions", schema="public")
    op.drop_table("login_sessions", schema="public")
    op.drop_index("uq_users_email_lower", table_name="users", schema="public")
    op.drop_index(op.f("ix_public_users_tenant_id"), table_name="users", schema="public")
    op.drop_table("users", schema="public")
    op.drop_table("tenant_work", schema="public")
    op.drop_table("idempotency_keys", schema="public")
    op.drop_table("tenants", schema="public")
    op.drop_table("subscription_quotas", schema="public")
    op.drop_table("platform_mappings", schema="public")
    op.drop_table("styles", schema="product_attributes")
    op.drop_table("sizes", schema="product_attributes")
    op.drop_table("seasons", schema="product_attributes")
    op.drop_table("patterns", schema="product_attributes")
    op.drop_table("origins", schema="product_attributes")
    op.drop_table("materials", schema="product_attributes")
    op.drop_table("genders", schema="product_attributes")
    op.drop_table("fits", schema="product_attributes")
    op.drop_table("decades", schema="product_attributes")
    op.drop_table("conditions", schema="product_attributes")
    op.drop_table("colors", schema="product_attributes")
    op.drop_table("closures", schema="product_attributes")
    op.drop_index(
        op.f("ix_product_attributes_categories_parent"), table_name="categories", schema="product_attributes"
    )
    op.drop_table("categories", schema="product_attributes")
    op.drop_table("brands", schema="product_attributes")
