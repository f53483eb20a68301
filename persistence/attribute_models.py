"""Models of the `product_attributes` schema (shared reference data) and `public.platform_mappings`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Column, ForeignKey, String, Table
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from domain.attributes import ATTRIBUTE_KINDS
from persistence.base import CoreBase

ATTRIBUTE_SCHEMA = "product_attributes"


def _attribute_table(kind: str) -> Table:
    columns: list[Column[Any]] = [
        Column("code", String(64), primary_key=True),
        Column("name_en", String(200), nullable=False),
        Column("name_fr", String(200), nullable=False),
    ]
    if kind == "categories":
        columns.append(
            Column("parent", String(64), ForeignKey(f"{ATTRIBUTE_SCHEMA}.categories.code"), index=True)
        )
    return Table(kind, CoreBase.metadata, *columns, schema=ATTRIBUTE_SCHEMA)


ATTRIBUTE_TABLES: dict[str, Table] = {kind: _attribute_table(kind) for kind in ATTRIBUTE_KINDS}


class PlatformMapping(CoreBase):
    """What one platform wants for one of our attribute codes (e.g. Vinted's `brand_id`)."""

    __tablename__ = "platform_mappings"
    __table_args__ = {"schema": "public"}

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    fields: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    #: False where the platform id could not be checked against the platform's public documentation.
    verified: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
