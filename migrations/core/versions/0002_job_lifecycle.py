"""Job lifecycle: when the sweep must next look at a tenant, and each Vinted member's request log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "tenant_work",
        sa.Column("due_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        schema="public",
    )
    op.create_index("ix_tenant_work_due", "tenant_work", ["due_at"], schema="public")
    op.create_table(
        "vinted_request_log",
        sa.Column("task_id", sa.UUID(), nullable=False),
        sa.Column("member", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.BigInteger(), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("handed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_vinted_request_log")),
        schema="public",
    )
    op.create_index(
        "ix_vinted_request_log_released", "vinted_request_log", ["member", "released_at"], schema="public"
    )
    op.create_index(
        "ix_vinted_request_log_handed", "vinted_request_log", ["member", "handed_at"], schema="public"
    )


def downgrade() -> None:
    op.drop_table("vinted_request_log", schema="public")
    op.drop_index("ix_tenant_work_due", table_name="tenant_work", schema="public")
    op.drop_column("tenant_work", "due_at", schema="public")
