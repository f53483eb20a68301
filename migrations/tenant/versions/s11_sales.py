"""Sales: one row per (platform, order), and the product's oversold flag.

Revision ID: s11_sales
Revises: ai12_ai_generation
Create Date: 2026-12-02 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "s11_sales"
down_revision: str | None = "ai12_ai_generation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sales",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.String(length=100), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("took_stock", sa.Boolean(), nullable=False),
        sa.Column("sold_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_sales_product_id_products"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sales")),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_sales_quantity_positive")),
    )
    op.create_index("uq_sales_platform_order", "sales", ["platform", "order_id"], unique=True)
    op.create_index("ix_sales_product", "sales", ["product_id", "detected_at"], unique=False)
    op.create_index("ix_sales_detected", "sales", ["detected_at", "id"], unique=False)
    op.add_column("products", sa.Column("oversold", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    op.drop_column("products", "oversold")
    op.drop_index("ix_sales_detected", table_name="sales")
    op.drop_index("ix_sales_product", table_name="sales")
    op.drop_index("uq_sales_platform_order", table_name="sales")
    op.drop_table("sales")
