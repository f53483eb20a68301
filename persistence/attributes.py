"""Reads of the shared reference attributes (`product_attributes` schema)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from domain.attributes import PRODUCT_ATTRIBUTE_FIELDS
from persistence.attribute_models import ATTRIBUTE_TABLES


async def unknown_attribute_fields(session: AsyncSession, values: Mapping[str, str | None]) -> list[str]:
    """Return the attribute fields whose code is not in the reference data, in field order."""
    wanted = {
        field: code
        for field, code in values.items()
        if field in PRODUCT_ATTRIBUTE_FIELDS and code is not None
    }
    if not wanted:
        return []
    # One round trip for all of a product's fields: each branch yields its field name when the code exists.
    branches: list[Select[str]] = []
    for field, code in wanted.items():
        table = ATTRIBUTE_TABLES[PRODUCT_ATTRIBUTE_FIELDS[field]]
        branches.append(select(literal(field).label("field")).where(table.c.code == code))
    found = set((await session.scalars(union_all(*branches))).all())
    return [field for field in PRODUCT_ATTRIBUTE_FIELDS if field in wanted and field not in found]


async def list_attributes(session: AsyncSession, kind: str) -> list[dict[str, Any]]:
    """Return every code of one attribute kind, ordered by code; the caller checks that `kind` exists."""
    table = ATTRIBUTE_TABLES[kind]
    rows = await session.execute(select(table).order_by(table.c.code))
    return [dict(row) for row in rows.mappings()]


async def attribute_names(
    session: AsyncSession, values: Mapping[str, str | None], language: str
) -> dict[str, str]:
    """Return the display name, in `language` (fr/en), of each attribute field's code that exists."""
    wanted = {
        field: code
        for field, code in values.items()
        if field in PRODUCT_ATTRIBUTE_FIELDS and code is not None
    }
    if not wanted:
        return {}
    branches: list[Select[tuple[str, str]]] = []
    for field, code in wanted.items():
        table = ATTRIBUTE_TABLES[PRODUCT_ATTRIBUTE_FIELDS[field]]
        name = table.c.name_fr if language == "fr" else table.c.name_en
        branches.append(select(literal(field).label("field"), name.label("name")).where(table.c.code == code))
    rows = await session.execute(union_all(*branches))
    return {str(row.field): str(row.name) for row in rows}
