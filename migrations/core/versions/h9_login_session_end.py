"""Hardening: a login session that logout ends, and the created_at indexes the retention purge walks.

Revision ID: h9_login_session_end
Revises: o13_operators
Create Date: 2026-12-02 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "h9_login_session_end"
down_revision: str | None = "o13_operators"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "login_sessions", sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True), schema="public"
    )
    op.create_index(
        op.f("ix_public_login_sessions_created_at"),
        "login_sessions",
        ["created_at"],
        unique=False,
        schema="public",
    )
    op.create_index(
        op.f("ix_public_idempotency_keys_created_at"),
        "idempotency_keys",
        ["created_at"],
        unique=False,
        schema="public",
    )


def downgrade() -> None:
    for table in ("idempotency_keys", "login_sessions"):
        op.drop_index(op.f(f"ix_public_{table}_created_at"), table_name=table, schema="public")
    op.drop_column("login_sessions", "ended_at", schema="public")
