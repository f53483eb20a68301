"""Tenant schema: products and their images.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 07:47:54.959557
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _has_trigram() -> bool:
    """pg_trgm backs the product search indexes; a server without it (the embedded one) searches unindexed."""
    found = op.get_bind().execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")).first()
    return found is not None


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("price", sa.Numeric(precision=10, scale=2), nullable=False),
        sa.Column("cost_price", sa.Numeric(precision=10, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), server_default="EUR", nullable=False),
        sa.Column("stock_quantity", sa.Integer(), server_default="1", nullable=False),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("brand", sa.String(length=64), nullable=True),
        sa.Column("size", sa.String(length=64), nullable=True),
        sa.Column("color", sa.String(length=64), nullable=True),
        sa.Column("material", sa.String(length=64), nullable=True),
        sa.Column("fit", sa.String(length=64), nullable=True),
        sa.Column("gender", sa.String(length=64), nullable=True),
        sa.Column("season", sa.String(length=64), nullable=True),
        sa.Column("condition", sa.String(length=64), nullable=True),
        sa.Column("label_size", sa.String(length=64), nullable=True),
        sa.Column("decade", sa.String(length=64), nullable=True),
        sa.Column("closure", sa.String(length=64), nullable=True),
        sa.Column("condition_sup", sa.Text(), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("origin", sa.String(length=64), nullable=True),
        sa.Column("pattern", sa.String(length=64), nullable=True),
        sa.Column("style", sa.String(length=64), nullable=True),
        sa.Column("dim1", sa.Numeric(precision=8, scale=1), nullable=True),
        sa.Column("dim2", sa.Numeric(precision=8, scale=1), nullable=True),
        sa.Column("dim3", sa.Numeric(precision=8, scale=1), nullable=True),
        sa.Column("dim4", sa.Numeric(precision=8, scale=1), nullable=True),
        sa.Column("dim5", sa.Numeric(precision=8, scale=1), nullable=True),
        sa.Column("dim6", sa.Numeric(precision=8, scale=1), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="draft", nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column(
            "needs_review", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sold_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("price > 0", name=op.f("ck_products_price_positive")),
        sa.CheckConstraint("stock_quantity >= 0", name=op.f("ck_products_stock_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
    )
    op.create_index(op.f("ix_products_brand"), "products", ["brand"], unique=False)
    op.create_index(op.f("ix_products_category"), "products", ["category"], unique=False)
    op.create_index(
        "ix_products_live_id",
        "products",
        ["id"],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(op.f("ix_products_status"), "products", ["status"], unique=False)
    if _has_trigram():
        for column in ("title", "sku"):
            op.create_index(
                f"ix_products_{column}_trgm",
                "products",
                [sa.literal_column(f"lower({column})")],
                unique=False,
                postgresql_using="gin",
                postgresql_ops={f"lower({column})": "public.gin_trgm_ops"},
            )
    op.create_index(
        "uq_products_sku_live",
        "products",
        ["sku"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "product_images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("storage_key", sa.String(length=200), nullable=False),
        sa.Column("display_order", sa.Integer(), server_default="0", nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_product_images_product_id_products"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product_images")),
    )
    op.create_index(op.f("ix_product_images_product_id"), "product_images", ["product_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_product_images_product_id"), table_name="product_images")
    op.drop_table("product_images")
    op.drop_index(
        "uq_products_sku_live", table_name="products", postgresql_where=sa.text("deleted_at IS NULL")
    )
    op.drop_index("ix_products_title_trgm", table_name="products", if_exists=True)
    op.drop_index(op.f("ix_products_status"), table_name="products")
    op.drop_index("ix_products_sku_trgm", table_name="products", if_exists=True)
    op.drop_index(
        "ix_products_live_id", table_name="products", postgresql_where=sa.text("deleted_at IS NULL")
    )
    op.drop_index(op.f("ix_products_category"), table_name="products")
    op.drop_index(op.f("ix_products_brand"), table_name="products")
    op.drop_table("products")
