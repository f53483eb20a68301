"""Shared reference data: product attributes and their marketplace mappings.

The JSON files beside this module are the seed for the ``product_attributes`` schema and the
``platform_mappings`` table. This module reads and checks them; it never touches a database.

Exceptions::

    ReferenceDataError   a data file is missing, not JSON, or not the documented shape
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from domain.attributes import ATTRIBUTE_KINDS

PLATFORMS: tuple[str, ...] = ("vinted", "ebay", "etsy")

#: Codes are lowercase ascii; decades may start with a digit (``1970s``).
CODE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_]*$")

_DATA_DIR = Path(__file__).parent
_ROW_KEYS = frozenset({"code", "name_en", "name_fr"})


class ReferenceDataError(Exception):
    """A reference data file is missing or malformed."""


@dataclass(frozen=True)
class AttributeRecord:
    """One attribute value, e.g. the colour ``navy`` or the category ``women_dresses``."""

    kind: str
    code: str
    name_en: str
    name_fr: str
    parent: str | None = None


def _read_json(path: Path) -> object:
    """Parse one data file, naming it in any error."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ReferenceDataError(f"{path.name}: file is missing") from error
    except json.JSONDecodeError as error:
        raise ReferenceDataError(f"{path.name}: not valid JSON ({error})") from error


def _text(row: dict[str, object], key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ReferenceDataError(f"{where}: {key!r} must be a non-empty string")
    return value


def _parse_row(kind: str, index: int, row: object) -> AttributeRecord:
    """Check one attribute row and build its record."""
    where = f"attributes/{kind}.json[{index}]"
    if not isinstance(row, dict):
        raise ReferenceDataError(f"{where}: each row must be an object")
    allowed = _ROW_KEYS | {"parent"} if kind == "categories" else _ROW_KEYS
    unknown = set(row) - allowed
    if unknown:
        raise ReferenceDataError(f"{where}: unknown keys {sorted(unknown)}")
    code = _text(row, "code", where)
    if not CODE_PATTERN.fullmatch(code):
        raise ReferenceDataError(f"{where}: code {code!r} is not lowercase snake_case ascii")
    parent: str | None = None
    if kind == "categories":
        if "parent" not in row:
            raise ReferenceDataError(f"{where}: categories need a 'parent' (null for a root)")
        raw_parent = row["parent"]
        if raw_parent is not None and not isinstance(raw_parent, str):
            raise ReferenceDataError(f"{where}: 'parent' must be a code or null")
        parent = raw_parent
    return AttributeRecord(
        kind=kind,
        code=code,
        name_en=_text(row, "name_en", where),
        name_fr=_text(row, "name_fr", where),
        parent=parent,
    )


@cache
def load_attributes() -> dict[str, list[AttributeRecord]]:
    """Load every attribute kind, in file order, checking shape and code uniqueness."""
    attributes: dict[str, list[AttributeRecord]] = {}
    for kind in ATTRIBUTE_KINDS:
        rows = _read_json(_DATA_DIR / "attributes" / f"{kind}.json")
        if not isinstance(rows, list):
            raise ReferenceDataError(f"attributes/{kind}.json: top level must be a list of rows")
        records = [_parse_row(kind, index, row) for index, row in enumerate(rows)]
        codes = [record.code for record in records]
        duplicates = sorted({code for code in codes if codes.count(code) > 1})
        if duplicates:
            raise ReferenceDataError(f"attributes/{kind}.json: duplicate codes {duplicates}")
        attributes[kind] = records
    return attributes


def _parse_platform(platform: str, document: object) -> dict[str, dict[str, dict[str, object]]]:
    """Check one platform file: ``{kind: {code: {...fields, "verified": bool}}}``."""
    name = f"platform_mappings/{platform}.json"
    if not isinstance(document, dict):
        raise ReferenceDataError(f"{name}: top level must be an object keyed by attribute kind")
    mappings: dict[str, dict[str, dict[str, object]]] = {}
    for kind, by_code in document.items():
        if kind not in ATTRIBUTE_KINDS:
            raise ReferenceDataError(f"{name}: unknown attribute kind {kind!r}")
        if not isinstance(by_code, dict):
            raise ReferenceDataError(f"{name}: {kind!r} must map codes to objects")
        checked: dict[str, dict[str, object]] = {}
        for code, fields in by_code.items():
            if not isinstance(fields, dict) or not isinstance(fields.get("verified"), bool):
                raise ReferenceDataError(f"{name}: {kind}.{code} must be an object with a boolean 'verified'")
            if len(fields) < 2:
                raise ReferenceDataError(f"{name}: {kind}.{code} has no platform field")
            if "none" in fields:
                reason = fields["none"]
                if not isinstance(reason, str) or not reason.strip():
                    raise ReferenceDataError(f"{name}: {kind}.{code} 'none' must give the reason")
                if set(fields) - {"none", "verified"}:
                    raise ReferenceDataError(f"{name}: {kind}.{code} is marked 'none' and also mapped")
            checked[str(code)] = dict(fields)
        mappings[str(kind)] = checked
    return mappings


@cache
def load_platform_mappings() -> dict[str, dict[str, dict[str, dict[str, object]]]]:
    """Load ``{platform: {kind: {code: fields}}}`` for every platform."""
    return {
        platform: _parse_platform(platform, _read_json(_DATA_DIR / "platform_mappings" / f"{platform}.json"))
        for platform in PLATFORMS
    }
