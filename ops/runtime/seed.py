"""Seed the shared reference data (`product_attributes` tables and `public.platform_mappings`).

Idempotent: every row is upserted from the data files in ops/config/reference_data, so a rerun after an edit
updates names and ids in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from ops.config.reference_data import AttributeRecord, load_attributes, load_platform_mappings
from persistence.attribute_models import ATTRIBUTE_TABLES, PlatformMapping


@dataclass(frozen=True)
class SeedReport:
    attributes: int
    mappings: int


def _parents_first(records: list[AttributeRecord]) -> list[AttributeRecord]:
    """Order categories so that a parent is always written before its children (the FK needs it)."""
    by_code = {record.code: record for record in records}

    def depth(record: AttributeRecord) -> int:
        level = 0
        while record.parent is not None:
            record = by_code[record.parent]
            level += 1
        return level

    return sorted(records, key=depth)


async def seed_reference_data(engine: AsyncEngine) -> SeedReport:
    attributes = load_attributes()
    mappings = load_platform_mappings()
    attribute_count = 0
    mapping_rows: list[dict[str, Any]] = []
    for platform, kinds in mappings.items():
        for kind, codes in kinds.items():
            for code, fields in codes.items():
                values = {name: value for name, value in fields.items() if name != "verified"}
                mapping_rows.append(
                    {
                        "platform": platform,
                        "kind": kind,
                        "code": code,
                        "fields": values,
                        "verified": bool(fields.get("verified", False)),
                    }
                )
    async with engine.begin() as connection:
        for kind, records in attributes.items():
            table = ATTRIBUTE_TABLES[kind]
            ordered = _parents_first(records) if kind == "categories" else records
            rows: list[dict[str, Any]] = [
                {"code": record.code, "name_en": record.name_en, "name_fr": record.name_fr}
                | ({"parent": record.parent} if kind == "categories" else {})
                for record in ordered
            ]
            if not rows:
                continue
            statement = insert(table)
            updated = {name: statement.excluded[name] for name in rows[0] if name != "code"}
            # executemany runs the rows in order, so parents land before their children.
            await connection.execute(
                statement.on_conflict_do_update(index_elements=["code"], set_=updated), rows
            )
            attribute_count += len(rows)
        if mapping_rows:
            statement = insert(PlatformMapping)
            await connection.execute(
                statement.values(mapping_rows).on_conflict_do_update(
                    index_elements=["platform", "kind", "code"],
                    set_={"fields": statement.excluded.fields, "verified": statement.excluded.verified},
                )
            )
    return SeedReport(attributes=attribute_count, mappings=len(mapping_rows))
