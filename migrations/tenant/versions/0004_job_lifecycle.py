"""Job lifecycle: delist-on-landing, and plugin tasks that know their member, slots and hand-out.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "plugin_queue",
        sa.Column("delist_on_landing", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column("plugin_tasks", sa.Column("vinted_user_id", sa.String(length=32), nullable=True))
    op.add_column("plugin_tasks", sa.Column("slots", sa.Integer(), server_default="1", nullable=False))
    op.add_column("plugin_tasks", sa.Column("handed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("plugin_tasks", sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("plugin_tasks", "withdrawn_at")
    op.drop_column("plugin_tasks", "handed_at")
    op.drop_column("plugin_tasks", "slots")
    op.drop_column("plugin_tasks", "vinted_user_id")
    op.drop_column("plugin_queue", "delist_on_landing")
