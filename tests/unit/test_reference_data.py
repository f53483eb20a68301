"""The shared attribute data and its marketplace mappings hold together."""

from __future__ import annotations

import pytest

from ops.config import reference_data
from ops.config.reference_data import (
    ATTRIBUTE_KINDS,
    PLATFORMS,
    AttributeRecord,
    ReferenceDataError,
    load_attributes,
    load_platform_mappings,
)

#: Etsy ``when_made`` values (annual refresh; see ops/config/reference_data/README.md).
ETSY_WHEN_MADE = frozenset(
    {
        "made_to_order",
        "2020_2025",
        "2010_2019",
        "2006_2009",
        "before_2006",
        "2000_2005",
        "1990s",
        "1980s",
        "1970s",
        "1960s",
        "1950s",
        "1940s",
        "1930s",
        "1920s",
        "1910s",
        "1900s",
        "1800s",
        "1700s",
        "before_1700",
    }
)
EBAY_CONDITIONS = frozenset(
    {
        "NEW",
        "NEW_OTHER",
        "NEW_WITH_DEFECTS",
        "PRE_OWNED_EXCELLENT",
        "USED_EXCELLENT",
        "USED_VERY_GOOD",
        "USED_GOOD",
        "PRE_OWNED_FAIR",
        "USED_ACCEPTABLE",
    }
)
EBAY_DEPARTMENTS = frozenset(
    {"Women", "Men", "Unisex Adults", "Girls", "Boys", "Unisex Kids", "Baby Girls", "Baby Boys"}
)

#: platform -> kind -> {field: type} every mapped code must carry (besides ``verified``).
REQUIRED_FIELDS: dict[str, dict[str, dict[str, type]]] = {
    "vinted": {
        "categories": {},
        "brands": {},
        "colors": {"color_id": int},
        "conditions": {"status_id": int},
        "sizes": {},
        "materials": {},
    },
    "ebay": {
        "categories": {"required_aspects": list},
        "conditions": {"condition": str},
        "brands": {"aspect": str},
        "colors": {"aspect": str},
        "sizes": {"aspect": str},
        "materials": {"aspect": str},
        "styles": {"aspect": str},
        "patterns": {"aspect": str},
        "genders": {"department": str},
    },
    "etsy": {
        "categories": {"taxonomy_id": int},
        "conditions": {},
        "sizes": {},
        "colors": {},
        "brands": {},
        "materials": {},
    },
}
OPTIONAL_FIELDS: dict[str, dict[str, dict[str, type]]] = {
    "vinted": {
        "categories": {
            "package_size_id": int,
            "size_group": int,
            "catalog_id": int,
            "catalog_id_by_gender": dict,
        },
        "brands": {"brand_id": int, "brand_title": str},
        "sizes": {"size_ids": dict},
    },
    "ebay": {
        "categories": {"category_id": str, "category_id_by_gender": dict, "recommended_aspects": list},
    },
}
#: platform -> kind -> the fields of which a mapped (not `none`) entry carries exactly one.
ONE_OF_FIELDS: dict[str, dict[str, set[str]]] = {
    "vinted": {
        "categories": {"catalog_id", "catalog_id_by_gender"},
        "brands": {"brand_id", "brand_title"},
        "sizes": {"size_ids"},
    },
    "ebay": {"categories": {"category_id", "category_id_by_gender"}},
}


def codes(kind: str) -> set[str]:
    return {record.code for record in load_attributes()[kind]}


def categories() -> dict[str, AttributeRecord]:
    return {record.code: record for record in load_attributes()["categories"]}


def leaves() -> set[str]:
    tree = categories()
    parents = {record.parent for record in tree.values() if record.parent is not None}
    return set(tree) - parents


def test_every_kind_is_loaded_in_order() -> None:
    attributes = load_attributes()

    assert tuple(attributes) == ATTRIBUTE_KINDS
    assert len(ATTRIBUTE_KINDS) == 14
    assert all(attributes[kind] for kind in ATTRIBUTE_KINDS)
    assert all(record.kind == kind for kind in ATTRIBUTE_KINDS for record in attributes[kind])


def test_loaders_are_cached() -> None:
    assert load_attributes() is load_attributes()
    assert load_platform_mappings() is load_platform_mappings()


@pytest.mark.parametrize("kind", ATTRIBUTE_KINDS)
def test_codes_are_unique_snake_case(kind: str) -> None:
    rows = load_attributes()[kind]
    found = [record.code for record in rows]

    assert len(found) == len(set(found))
    assert all(reference_data.CODE_PATTERN.fullmatch(code) for code in found)


@pytest.mark.parametrize("kind", ATTRIBUTE_KINDS)
def test_every_row_has_english_and_french_names(kind: str) -> None:
    for record in load_attributes()[kind]:
        assert record.name_en.strip(), record
        assert record.name_fr.strip(), record
        assert record.name_en == record.name_en.strip()
        assert record.name_fr == record.name_fr.strip()


@pytest.mark.parametrize("kind", [kind for kind in ATTRIBUTE_KINDS if kind != "categories"])
def test_only_categories_have_parents(kind: str) -> None:
    assert all(record.parent is None for record in load_attributes()[kind])


def test_category_parents_exist() -> None:
    tree = categories()

    dangling = {code: r.parent for code, r in tree.items() if r.parent is not None and r.parent not in tree}
    assert dangling == {}


def test_category_tree_has_no_cycle() -> None:
    tree = categories()
    for code in tree:
        seen: set[str] = set()
        current: str | None = code
        while current is not None:
            assert current not in seen, f"cycle through {code}"
            seen.add(current)
            current = tree[current].parent


def test_category_roots_and_groups() -> None:
    tree = categories()
    roots = {code for code, record in tree.items() if record.parent is None}

    assert roots == {"women", "men", "kids"}
    for root in roots:
        groups = {code for code, record in tree.items() if record.parent == root}
        assert groups == {f"{root}_{group}" for group in ("clothing", "shoes", "bags", "accessories")}


def test_category_leaves_sit_under_a_group() -> None:
    tree = categories()
    for leaf in leaves():
        path = []
        current: str | None = leaf
        while current is not None:
            path.append(current)
            current = tree[current].parent
        assert len(path) == 3, path


def test_enough_category_leaves() -> None:
    assert len(leaves()) >= 80


def test_enough_brands() -> None:
    expected = {"zara", "h_and_m", "mango", "uniqlo", "nike", "adidas", "chanel", "louis_vuitton"}
    expected |= {"levis", "carhartt", "ralph_lauren"}

    assert len(load_attributes()["brands"]) >= 300
    assert expected <= codes("brands")


def test_size_systems_are_present() -> None:
    sizes = codes("sizes")

    assert {"xxs", "xs", "s", "m", "l", "xl", "xxl", "xxxl"} <= sizes
    assert {f"fr_{n}" for n in range(32, 56, 2)} <= sizes
    assert {f"uk_{n}" for n in range(4, 24, 2)} <= sizes
    assert {f"us_{n}" for n in range(0, 18, 2)} <= sizes
    assert {f"shoe_eu_{n}" for n in range(35, 48)} <= sizes
    assert {f"w{n}" for n in range(24, 41)} <= sizes
    assert {f"l{n}" for n in range(28, 37, 2)} <= sizes
    assert {"kids_0_3_months", "kids_16_years"} <= sizes


def test_conditions_are_exactly_the_five() -> None:
    found = [record.code for record in load_attributes()["conditions"]]

    assert found == ["new_with_tags", "new_without_tags", "very_good", "good", "satisfactory"]


def test_decades_run_from_1920s_to_2020s() -> None:
    found = [record.code for record in load_attributes()["decades"]]

    assert found == [f"{year}s" for year in range(1920, 2030, 10)]


def test_genders_include_adults_and_kids() -> None:
    assert {"women", "men", "unisex", "girls", "boys"} <= codes("genders")


def test_every_platform_file_is_loaded() -> None:
    assert tuple(load_platform_mappings()) == PLATFORMS


def test_every_mapped_code_exists_in_the_attributes() -> None:
    for platform, kinds in load_platform_mappings().items():
        for kind, by_code in kinds.items():
            unknown = set(by_code) - codes(kind)
            assert unknown == set(), f"{platform}.{kind}: {sorted(unknown)}"


def test_mapping_fields_have_the_right_types() -> None:
    for platform, kinds in load_platform_mappings().items():
        for kind, by_code in kinds.items():
            required = REQUIRED_FIELDS[platform][kind]
            optional = OPTIONAL_FIELDS.get(platform, {}).get(kind, {})
            for code, fields in by_code.items():
                where = f"{platform}.{kind}.{code}"
                assert isinstance(fields["verified"], bool), where
                if "none" in fields:
                    assert set(fields) == {"none", "verified"} and str(fields["none"]).strip(), where
                    continue
                assert set(fields) <= {"verified", *required, *optional}, where
                one_of = ONE_OF_FIELDS.get(platform, {}).get(kind)
                if one_of:
                    assert len(one_of & set(fields)) == 1, where
                for name, expected in (required | optional).items():
                    if name in required or name in fields:
                        value = fields[name]
                        # bool is an int subclass; an id is never a bool.
                        assert isinstance(value, expected), where
                        assert not isinstance(value, bool), where
                        if isinstance(value, int):
                            assert value > 0, where
                        else:
                            assert str(value).strip(), where


def test_vinted_size_ids_are_keyed_by_a_size_group_some_category_uses() -> None:
    vinted = load_platform_mappings()["vinted"]
    groups = {str(f["size_group"]) for f in vinted["categories"].values() if "size_group" in f}

    for code, fields in vinted["sizes"].items():
        for group, size_id in dict(fields.get("size_ids", {})).items():
            assert group in groups, code
            assert isinstance(size_id, int) and size_id > 0, code


@pytest.mark.parametrize("platform", PLATFORMS)
def test_every_category_is_mapped(platform: str) -> None:
    mapped = set(load_platform_mappings()[platform]["categories"])

    assert codes("categories") - mapped == set()


@pytest.mark.parametrize("platform", ["vinted", "ebay"])
def test_every_condition_is_mapped(platform: str) -> None:
    assert set(load_platform_mappings()[platform]["conditions"]) == codes("conditions")


def test_vinted_condition_status_ids() -> None:
    status = {code: f["status_id"] for code, f in load_platform_mappings()["vinted"]["conditions"].items()}

    assert status == {"new_with_tags": 6, "new_without_tags": 1, "very_good": 2, "good": 3, "satisfactory": 4}


def test_vinted_colors_are_all_mapped() -> None:
    assert set(load_platform_mappings()["vinted"]["colors"]) == codes("colors")


def test_ebay_conditions_are_in_the_enum() -> None:
    conditions = load_platform_mappings()["ebay"]["conditions"]

    assert {fields["condition"] for fields in conditions.values()} <= EBAY_CONDITIONS


def test_ebay_category_ids_are_numeric_strings() -> None:
    for code, fields in load_platform_mappings()["ebay"]["categories"].items():
        by_gender = dict(fields.get("category_id_by_gender", {}))
        ids = [fields["category_id"]] if "category_id" in fields else list(by_gender.values())
        assert all(str(category_id).isdigit() for category_id in ids), code
        assert "none" in fields or ids, code


def test_ebay_departments_are_known_values() -> None:
    genders = load_platform_mappings()["ebay"]["genders"]

    assert set(genders) == codes("genders")
    assert {fields["department"] for fields in genders.values()} <= EBAY_DEPARTMENTS


def test_ebay_brand_aspects_cover_every_brand() -> None:
    assert set(load_platform_mappings()["ebay"]["brands"]) == codes("brands")


def test_malformed_attribute_row_is_rejected() -> None:
    with pytest.raises(ReferenceDataError, match="code"):
        reference_data._parse_row("colors", 0, {"code": "Navy Blue", "name_en": "Navy", "name_fr": "Marine"})
    with pytest.raises(ReferenceDataError, match="name_fr"):
        reference_data._parse_row("colors", 0, {"code": "navy", "name_en": "Navy", "name_fr": " "})
    with pytest.raises(ReferenceDataError, match="parent"):
        reference_data._parse_row("categories", 0, {"code": "women", "name_en": "W", "name_fr": "F"})


def test_malformed_mapping_is_rejected() -> None:
    with pytest.raises(ReferenceDataError, match="verified"):
        reference_data._parse_platform("vinted", {"colors": {"navy": {"color_id": 27}}})
    with pytest.raises(ReferenceDataError, match="unknown attribute kind"):
        reference_data._parse_platform("vinted", {"colour": {}})
    with pytest.raises(ReferenceDataError, match="top level"):
        reference_data._parse_platform("vinted", [])
