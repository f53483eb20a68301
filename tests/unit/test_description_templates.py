"""The template writer over 100 varied products: within limits, in French and English, all different, and
stating nothing that is not in the product's attributes (checked by removing every fact and looking for
any other reference value, or any number, left in the text)."""

from __future__ import annotations

import json
import random
import re
from decimal import Decimal
from pathlib import Path

import pytest

from domain.attributes import PRODUCT_ATTRIBUTE_FIELDS
from domain.description_templates import (
    PRODUCT_TITLE_MAX,
    Language,
    ListingCopy,
    ProductFacts,
    item_noun,
    write_listing_copy,
)
from domain.mapping import ebay, etsy, vinted
from domain.text_policy import TITLE_LIMITS, find_breaches

REFERENCE = Path(__file__).resolve().parents[2] / "ops" / "config" / "reference_data" / "attributes"
PLATFORMS = ("vinted", "ebay", "etsy")
FREE_NOTES = {
    "fr": ["Petite tache sur la manche", "Bouton du bas recousu", "Légère décoloration au col"],
    "en": ["Small mark on the sleeve", "Bottom button sewn back on", "Slight fading at the collar"],
}
MODELS = ["501", "Air Max 90", "Speedy 30", "Trench Kensington"]


def _reference() -> dict[str, list[dict[str, str]]]:
    return {
        kind: json.loads((REFERENCE / f"{kind}.json").read_text())
        for kind in set(PRODUCT_ATTRIBUTE_FIELDS.values())
    }


REFERENCE_DATA = _reference()


def _varied_products(count: int) -> list[tuple[ProductFacts, ProductFacts]]:
    """`count` products, each as French and English facts, with attributes drawn at random (some unset)."""
    rng = random.Random(20261127)
    products = []
    for index in range(count):
        chosen = {
            field: rng.choice(REFERENCE_DATA[kind]) if rng.random() < 0.75 else None
            for field, kind in PRODUCT_ATTRIBUTE_FIELDS.items()
        }
        measurements = tuple(Decimal(rng.randrange(100, 1200)) / 10 for _ in range(rng.randrange(0, 4)))
        notes_index = rng.randrange(len(FREE_NOTES["fr"])) if rng.random() < 0.3 else None
        model = rng.choice(MODELS) if rng.random() < 0.25 else None
        label_size = str(rng.choice([36, 38, 40, 42])) if rng.random() < 0.2 else None
        pair = []
        for language in ("fr", "en"):
            names = {field: entry[f"name_{language}"] for field, entry in chosen.items() if entry is not None}
            pair.append(
                ProductFacts(
                    product_id=1000 + index,
                    language=language,
                    sku=f"SKU-{index:04d}",
                    model=model,
                    label_size=label_size,
                    condition_sup=FREE_NOTES[language][notes_index] if notes_index is not None else None,
                    measurements=measurements,
                    **names,
                )
            )
        products.append((pair[0], pair[1]))
    return products


PRODUCTS = _varied_products(100)


def _number_forms(value: Decimal) -> set[str]:
    text = f"{value.normalize():f}"
    return {text, text.replace(".", ",")}


def _facts_text(facts: ProductFacts) -> list[str]:
    """Every string the copy may legitimately contain, longest first (so that removal is greedy)."""
    values = [
        getattr(facts, field)
        for field in (*PRODUCT_ATTRIBUTE_FIELDS, "label_size", "model", "condition_sup", "sku")
        if getattr(facts, field)
    ]
    values.append(item_noun(facts.category, facts.language))
    for value in facts.measurements:
        values.extend(_number_forms(value))
    # Titles drop bracketed glosses ("W32 (tour de taille)" -> "W32").
    values.extend(re.sub(r"\s*\([^)]*\)", "", value) for value in list(values))
    return sorted({value for value in values if value}, key=len, reverse=True)


def _reference_names(language: str) -> tuple[re.Pattern[str], dict[str, str]]:
    """One pattern matching any reference value's name (3+ characters) in a language, and name -> kind."""
    kinds: dict[str, str] = {}
    for kind, entries in REFERENCE_DATA.items():
        for entry in entries:
            name = entry[f"name_{language}"]
            for form in {name, re.sub(r"\s*\([^)]*\)", "", name)}:
                if len(form) >= 3:
                    kinds.setdefault(form.lower(), kind)
    alternatives = "|".join(re.escape(form) for form in sorted(kinds, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE), kinds


NAMES = {language: _reference_names(language) for language in ("fr", "en")}


def _unexplained(copy_text: str, facts: ProductFacts) -> list[str]:
    """Reference values (of any kind) and numbers the text states that the product's facts do not."""
    remaining = copy_text
    for fact in _facts_text(facts):
        remaining = re.sub(re.escape(fact), " ", remaining, flags=re.IGNORECASE)
    pattern, kinds = NAMES[facts.language]
    stated = [f"{kinds[match.lower()]}:{match}" for match in pattern.findall(remaining)]
    stated.extend(f"number:{number}" for number in re.findall(r"\d+", remaining))
    return stated


def _copies() -> list[tuple[ProductFacts, ListingCopy]]:
    return [(facts, write_listing_copy(facts, PLATFORMS)) for pair in PRODUCTS for facts in pair]


COPIES = _copies()


def test_the_title_limits_are_the_mappers() -> None:
    assert TITLE_LIMITS == {"vinted": vinted.TITLE_MAX, "ebay": ebay.TITLE_MAX, "etsy": etsy.TITLE_MAX}


def test_every_copy_fits_each_platform_and_breaks_no_listing_rule() -> None:
    for facts, copy in COPIES:
        assert 0 < len(copy.title) <= min(PRODUCT_TITLE_MAX, *TITLE_LIMITS.values())
        assert 0 < len(copy.description) <= vinted.DESCRIPTION_MAX
        for platform in PLATFORMS:
            assert len(copy.titles[platform]) <= TITLE_LIMITS[platform]
            assert find_breaches(copy.titles[platform], copy.description, platform) == [], (facts, copy)


def test_a_longer_limit_gets_a_fuller_title() -> None:
    fuller = [copy for _, copy in COPIES if len(copy.titles["etsy"]) > len(copy.titles["ebay"])]
    assert fuller, "some titles should use Etsy's 140 characters beyond eBay's 80"


@pytest.mark.parametrize("language", ["fr", "en"])
def test_no_two_products_get_the_same_copy(language: Language) -> None:
    descriptions = [copy.description for facts, copy in COPIES if facts.language == language]
    assert len(set(descriptions)) == len(descriptions) == 100
    # Variety, not only the reference line: the openings differ too.
    openings = {description.split("\n")[0].split(" ")[0] for description in descriptions}
    assert len(openings) >= 4


def test_the_same_product_gets_the_same_copy_again() -> None:
    facts = PRODUCTS[7][0]
    assert write_listing_copy(facts, PLATFORMS) == write_listing_copy(facts, PLATFORMS)


def test_every_stated_fact_comes_from_the_attributes() -> None:
    for facts, copy in COPIES:
        for text in (copy.description, *copy.titles.values()):
            assert _unexplained(text, facts) == [], (facts, text)


def test_the_check_catches_an_invented_fact() -> None:
    """The traceability check is not vacuous: a material or a number the product lacks is reported."""
    facts = ProductFacts(product_id=1, language="fr", category="Robes", brand="Zara", color="Noir")
    assert _unexplained("Robe Zara. Couleur : noir.", facts) == []
    assert _unexplained("Robe Zara en cachemire. Couleur : noir.", facts)[0].endswith(":cachemire")
    assert "number:42" in _unexplained("Robe Zara taille 42.", facts)


def test_french_and_english_copy_use_their_own_words() -> None:
    for facts, copy in COPIES:
        if facts.condition:
            assert facts.condition.lower() in copy.description.lower()
        marker = ("Taille", "État", "Matière", "Couleur", "Coloris", "Réf", "Référence")
        english = ("Size", "Condition", "Material", "Colour", "Ref", "Reference")
        words = marker if facts.language == "fr" else english
        others = english if facts.language == "fr" else marker
        text = copy.description
        assert any(word in text for word in words)
        assert not any(re.search(rf"(?<!\w){word}(?!\w)", text) for word in others if word not in words)


def test_a_product_with_nothing_but_a_title_still_gets_plain_copy() -> None:
    bare = write_listing_copy(ProductFacts(product_id=5, language="en"), ["ebay"])
    assert bare.title == "Item"
    assert bare.description
    assert find_breaches(bare.title, bare.description, "ebay") == []
