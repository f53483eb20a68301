"""The data check CI runs: every seeded value the mappers use is mapped or marked `none` on every platform,
ids are of the right type and not shared, and ops/config/reference_data/README.md
shows the current coverage table.

Run `python -m tests.unit.test_reference_coverage` to print the table to paste into the README.
"""

from __future__ import annotations

from collections import Counter

import pytest

from ops.config.reference_data import PLATFORMS, load_attributes, load_platform_mappings
from ops.config.reference_data import __file__ as reference_data_init

#: The kinds the coverage table reports: what a reseller sets and a mapper reads.
KINDS: tuple[str, ...] = ("categories", "brands", "sizes", "colors", "conditions", "materials")
#: Kinds that must be fully accounted for (mapped or `none` with its reason) on every platform: all of them.
COMPLETE_KINDS: tuple[str, ...] = KINDS
README = reference_data_init.replace("__init__.py", "README.md")


def coverage(platform: str, kind: str) -> tuple[int, int, int]:
    """Return (mapped, none, missing) for one kind on one platform."""
    codes = [record.code for record in load_attributes()[kind]]
    entries = load_platform_mappings()[platform].get(kind, {})
    none = sum(1 for code in codes if "none" in entries.get(code, {}))
    mapped = sum(1 for code in codes if code in entries and "none" not in entries[code])
    return mapped, none, len(codes) - mapped - none


def coverage_table() -> str:
    lines = ["| kind | " + " | ".join(PLATFORMS) + " |", "|---|" + "---|" * len(PLATFORMS)]
    for kind in KINDS:
        cells = ["{} / {} / {}".format(*coverage(platform, kind)) for platform in PLATFORMS]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@pytest.mark.parametrize("kind", COMPLETE_KINDS)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_every_value_is_mapped_or_marked_none(platform: str, kind: str) -> None:
    assert coverage(platform, kind)[2] == 0, f"{platform}.{kind} has codes with no entry"


def test_nearly_every_brand_has_a_vinted_id_or_the_free_text_path() -> None:
    brands = load_platform_mappings()["vinted"]["brands"]
    with_id = sum(1 for fields in brands.values() if "brand_id" in fields)
    free_text = sum(1 for fields in brands.values() if "brand_title" in fields)

    assert with_id + free_text == len(load_attributes()["brands"])
    assert with_id / len(brands) >= 0.75


def test_no_two_brands_share_a_vinted_brand_id() -> None:
    brands = load_platform_mappings()["vinted"]["brands"].values()
    ids = Counter(fields["brand_id"] for fields in brands if "brand_id" in fields)

    assert [brand_id for brand_id, count in ids.items() if count > 1] == []


def test_no_two_leaf_categories_share_a_vinted_catalogue() -> None:
    categories = load_platform_mappings()["vinted"]["categories"].values()
    ids = Counter(fields["catalog_id"] for fields in categories if "catalog_id" in fields)

    assert [catalog_id for catalog_id, count in ids.items() if count > 1] == []


def test_a_size_has_one_id_per_vinted_size_group_and_ids_are_not_shared_within_a_group() -> None:
    seen: dict[tuple[str, int], str] = {}
    for code, fields in load_platform_mappings()["vinted"]["sizes"].items():
        for group, size_id in dict(fields.get("size_ids", {})).items():
            key = (group, size_id)
            # Vinted's women's ids mix systems on purpose: one id is "M / 38 / UK 10".
            if group != "4":
                assert key not in seen, f"{code} and {seen.get(key)} share Vinted size {size_id}"
            seen[key] = code


def test_the_readme_shows_the_current_coverage_table() -> None:
    with open(README, encoding="utf-8") as readme:
        assert coverage_table() in readme.read()


if __name__ == "__main__":
    print(coverage_table())
