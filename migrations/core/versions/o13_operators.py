"""Operator accounts: users with role `operator` and no tenant; the tenants that had a job fail.

Revision ID: o13_operators
Revises: ai12_ai_credits
Create Date: 2026-12-02 14:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "o13_operators"
down_revision: str | None = "ai12_ai_credits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("users", "tenant_id", existing_type=sa.Integer(), nullable=True, schema="public")
    op.create_check_constraint(
        op.f("ck_users_operator_without_tenant"),
        "users",
        "(role = 'operator') = (tenant_id IS NULL)",
        schema="public",
    )
    op.create_table(
        "tenant_failures",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column(
            "last_failed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["public.tenants.id"],
            name=op.f("fk_tenant_failures_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_tenant_failures")),
        schema="public",
    )


def downgrade() -> None:
    op.drop_table("tenant_failures", schema="public")
    op.execute("DELETE FROM public.users WHERE role = 'operator'")
    op.drop_constraint(op.f("ck_users_operator_without_tenant"), "users", schema="public")
    op.alter_column("users", "tenant_id", existing_type=sa.Integer(), nullable=False, schema="public")
