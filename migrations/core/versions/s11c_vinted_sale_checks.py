"""The Vinted sale check's share of a member's budget: which logged requests were sale checks.

Revision ID: s11c_vinted_sale_checks
Revises: s11_marketplace_directory
Create Date: 2026-12-03 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "s11c_vinted_sale_checks"
down_revision: str | None = "s11_marketplace_directory"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "vinted_request_log",
        sa.Column("sale_check", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        schema="public",
    )


def downgrade() -> None:
    op.drop_column("vinted_request_log", "sale_check", schema="public")
