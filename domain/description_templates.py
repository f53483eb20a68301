"""Listing copy written from a product's attributes alone: the `template` provider (no network, no cost).

The copy states only what the attributes say. Filler sentences are invitations ("ask me anything"),
never claims about the item (no "perfect condition", "smoke-free home", "fast shipping"). French
avoids constructions whose grammar depends on the noun's gender ("Couleur : noir" rather than an
adjective that must agree), so any category reads correctly.

Variety comes from a seeded choice among phrasings and layouts: the same product always gets the same
copy (a re-run of a job writes the same text), different products get different copy, and the SKU
line makes two products with identical attributes still read differently.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from domain.mapping.common import truncate_title
from domain.text_policy import TITLE_LIMITS

Language = Literal["fr", "en"]

#: The product's own title field takes at most this many characters.
PRODUCT_TITLE_MAX = 100


@dataclass(frozen=True)
class ProductFacts:
    """What copy may state about one product: attribute names in the copy's language, and free text."""

    product_id: int
    language: Language
    sku: str | None = None
    category: str | None = None
    brand: str | None = None
    size: str | None = None
    color: str | None = None
    material: str | None = None
    fit: str | None = None
    gender: str | None = None
    season: str | None = None
    condition: str | None = None
    decade: str | None = None
    closure: str | None = None
    origin: str | None = None
    pattern: str | None = None
    style: str | None = None
    #: Free text the seller typed: the size on the label, the maker's model, notes on wear.
    label_size: str | None = None
    model: str | None = None
    condition_sup: str | None = None
    #: The measurements dim1..dim6 that are set, in order.
    measurements: tuple[Decimal, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class ListingCopy:
    """A title per target platform (each within its limit), the product's title, and one description."""

    title: str
    description: str
    titles: dict[str, str]


def write_listing_copy(facts: ProductFacts, platforms: Sequence[str]) -> ListingCopy:
    """Write the copy of one product for the given marketplaces (deterministic for the same facts)."""
    rng = random.Random(f"{facts.product_id}:{facts.sku}:{facts.language}")  # noqa: S311 - phrasing, not secrets
    words = _FRENCH if facts.language == "fr" else _ENGLISH
    title_parts = _title_parts(facts, words, rng)
    titles = {
        platform: _fit_title(title_parts, TITLE_LIMITS.get(platform, PRODUCT_TITLE_MAX))
        for platform in platforms
    }
    product_limit = min(
        [PRODUCT_TITLE_MAX, *(TITLE_LIMITS.get(platform, PRODUCT_TITLE_MAX) for platform in platforms)]
    )
    return ListingCopy(
        title=_fit_title(title_parts, product_limit),
        description=_description(facts, words, rng),
        titles=titles,
    )


def item_noun(category_name: str | None, language: Language) -> str:
    """The head noun of a category name, singular where the language says one item ("Robes" -> "Robe")."""
    if not category_name:
        return "Article" if language == "fr" else "Item"
    head = category_name.split(" & ")[0].strip()
    words = head.split(" ")
    if language == "fr":
        words[0] = _french_singular(words[0])
    else:
        words[-1] = _english_singular(words[-1])
    noun = " ".join(words)
    return noun[:1].upper() + noun[1:]


def _french_singular(word: str) -> str:
    lower = word.lower()
    if lower in _FRENCH_ALWAYS_PLURAL or len(word) <= 3:
        return word
    if lower.endswith(("eaux", "oux")):
        return word[:-1]
    if lower.endswith("s"):
        return word[:-1]
    return word


def _english_singular(word: str) -> str:
    lower = word.lower()
    if lower in _ENGLISH_ALWAYS_PLURAL or not lower.endswith("s") or lower.endswith("ss") or len(word) <= 3:
        return word
    if lower.endswith(("sses", "shes", "ches", "xes")):
        return word[:-2]
    return word[:-1]


# Words for a pair or a garment with two legs read wrong in the singular.
_FRENCH_ALWAYS_PLURAL = frozenset({"lunettes", "bodies"})
_ENGLISH_ALWAYS_PLURAL = frozenset(
    {
        "jeans", "trousers", "shorts", "leggings", "tights", "pyjamas", "boots", "trainers", "sandals",
        "heels", "flats", "loafers", "slippers", "sunglasses", "gloves", "earrings", "shoes", "clothes",
        "mittens", "tracksuits", "swimwear", "nightwear", "activewear", "underwear", "jewellery",
    }
)  # fmt: skip


def _bare(name: str) -> str:
    """A name without its bracketed gloss, for titles ("W32 (tour de taille)" -> "W32")."""
    return re.sub(r"\s*\([^)]*\)", "", name).strip() or name


def _lower_first(text: str) -> str:
    # Keep acronyms and brand-like words ("Y2K", "T-shirt") as written.
    if len(text) > 1 and text[1].isupper():
        return text
    return text[:1].lower() + text[1:]


def _number(value: Decimal, language: Language) -> str:
    text = f"{value.normalize():f}"
    return text.replace(".", ",") if language == "fr" else text


@dataclass(frozen=True)
class _Words:
    """One language's phrasings; each list is a set of interchangeable ways to say the same fact."""

    language: Language
    size_label: str
    separators: tuple[str, ...]
    openings: tuple[Callable[[str, ProductFacts], str], ...]
    lines: dict[str, tuple[str, ...]]
    closings: tuple[str, ...]
    measurement_closings: tuple[str, ...]
    list_intros: tuple[str, ...]


def _title_parts(facts: ProductFacts, words: _Words, rng: random.Random) -> list[str]:
    """Title fragments, most telling first; `_fit_title` keeps as many as the limit allows."""
    noun = item_noun(facts.category, words.language)
    # "Robe Zara 501" in French; "Zara 501 Dress" in English, where the maker comes first.
    ordered = (noun, facts.brand, facts.model) if words.language == "fr" else (facts.brand, facts.model, noun)
    head = " ".join(part for part in ordered if part)
    extras: list[str] = []
    if facts.size:
        size = _bare(facts.size)
        starts_with_label = size.lower().startswith(("pointure", "taille", "size", "one size"))
        extras.append(size if starts_with_label else f"{words.size_label} {size}")
    optional = [facts.color, facts.decade, facts.material, facts.pattern, facts.fit, facts.style]
    present = [_bare(value) for value in optional if value]
    # Colour and decade lead; the rest in a per-product order, for variety.
    leading, rest = present[:2], present[2:]
    rng.shuffle(rest)
    extras = [*leading[:1], *extras, *leading[1:], *rest]
    separator = rng.choice(words.separators)
    return [head, *[separator + extra for extra in extras]]


def _fit_title(parts: list[str], limit: int) -> str:
    title = parts[0]
    for part in parts[1:]:
        if len(title) + len(part) <= limit:
            title += part
    return truncate_title(title, limit)


def _description(facts: ProductFacts, words: _Words, rng: random.Random) -> str:
    noun = item_noun(facts.category, words.language)
    opening = rng.choice(words.openings)(noun, facts)
    lines: list[str] = []
    details = _details(facts, words)
    as_list = rng.random() < 0.5
    order = list(details)
    # Size and condition first (what buyers look for), the rest shuffled per product.
    head = [key for key in ("size", "label_size", "condition", "condition_sup") if key in details]
    tail = [key for key in order if key not in head and key != "sku"]
    rng.shuffle(tail)
    for key in [*head, *tail]:
        lines.append(rng.choice(words.lines[key]).format(**details[key]))
    paragraphs = [opening]
    if as_list:
        paragraphs.append(
            rng.choice(words.list_intros) + "\n" + "\n".join(f"- {line.rstrip('.')}" for line in lines)
        )
    elif lines:
        paragraphs.append(" ".join(lines))
    closings = list(words.closings)
    if facts.measurements:
        closings.extend(words.measurement_closings)
    closing = rng.choice(closings)
    if closing:
        paragraphs.append(closing)
    if "sku" in details:
        paragraphs.append(rng.choice(words.lines["sku"]).format(**details["sku"]))
    return "\n\n".join(paragraph for paragraph in paragraphs if paragraph)


def _details(facts: ProductFacts, words: _Words) -> dict[str, dict[str, str]]:
    """The facts to state as lines, keyed by the phrasing list of `words.lines` that states each."""
    language = words.language
    values: dict[str, str | None] = {
        "condition": facts.condition,
        "material": facts.material,
        "fit": facts.fit,
        "pattern": facts.pattern,
        "style": facts.style,
        "season": facts.season,
        "gender": facts.gender,
        "closure": facts.closure,
        "origin": facts.origin,
        "model": facts.model,
        "decade": facts.decade,
        "color": facts.color,
        "condition_sup": facts.condition_sup.strip() if facts.condition_sup else None,
        "sku": facts.sku,
    }
    details = {key: {"value": value, "lower": _lower_first(value)} for key, value in values.items() if value}
    if facts.size:
        details["size"] = {"value": facts.size, "lower": _lower_first(facts.size)}
    if facts.label_size:
        details["label_size"] = {"value": facts.label_size, "lower": facts.label_size}
    if facts.measurements:
        joined = " / ".join(_number(value, language) for value in facts.measurements)
        details["measurements"] = {"value": joined, "lower": joined}
    return details


def _opening(with_brand: str, without_brand: str) -> Callable[[str, ProductFacts], str]:
    def opening(noun: str, facts: ProductFacts) -> str:
        template = with_brand if facts.brand else without_brand
        return template.format(noun=noun, lower=_lower_first(noun), brand=facts.brand or "").strip()

    return opening


_FRENCH = _Words(
    language="fr",
    size_label="Taille",
    separators=(" - ", " · ", " | "),
    openings=(
        _opening("{noun} {brand}.", "{noun}."),
        _opening("À vendre : {lower} {brand}.", "À vendre : {lower}."),
        _opening("{noun} de la marque {brand}.", "{noun} à découvrir."),
        _opening("Mise en vente : {lower} {brand}.", "Mise en vente : {lower}."),
        _opening("Je vous propose : {lower} {brand}.", "Je vous propose : {lower}."),
    ),
    lines={
        "size": ("Taille : {value}.", "Taille {value}."),
        "label_size": ("Taille indiquée sur l'étiquette : {value}.", "Taille étiquette : {value}."),
        "condition": ("État : {lower}.", "État général : {lower}."),
        "condition_sup": ("À noter : {value}", "Précision sur l'état : {value}"),
        "material": ("Matière : {lower}.", "Composition : {lower}."),
        "color": ("Couleur : {lower}.", "Coloris : {lower}."),
        "fit": ("Coupe : {lower}.",),
        "pattern": ("Motif : {lower}.",),
        "style": ("Style : {lower}.", "Dans un style {lower}."),
        "season": ("Saison : {lower}.",),
        "gender": ("Rayon : {lower}.", "Genre : {lower}."),
        "closure": ("Fermeture : {lower}.", "Système de fermeture : {lower}."),
        "origin": ("Origine : {value}.", "Provenance : {value}."),
        "model": ("Modèle : {value}.", "Nom du modèle : {value}."),
        "decade": ("Époque : {lower}.", "Une pièce des {lower}."),
        "measurements": ("Mesures : {value}.", "Mesures relevées : {value}."),
        "sku": ("Réf. {value}", "Référence : {value}"),
    },
    closings=(
        "N'hésitez pas à me poser vos questions.",
        "Je reste disponible pour toute question.",
        "Une question ? Écrivez-moi.",
        "",
    ),
    measurement_closings=("Pensez à comparer les mesures avec un vêtement que vous portez.",),
    list_intros=("Détails :", "En bref :", "Caractéristiques :"),
)

_ENGLISH = _Words(
    language="en",
    size_label="Size",
    separators=(" - ", " · ", " | "),
    openings=(
        _opening("{noun} by {brand}.", "{noun}."),
        _opening("For sale: {lower} by {brand}.", "For sale: {lower}."),
        _opening("{brand} {lower} for sale.", "{noun} for sale."),
        _opening("Up for grabs: {brand} {lower}.", "Up for grabs: {lower}."),
        _opening("Listing this {brand} {lower}.", "Listing this {lower}."),
    ),
    lines={
        "size": ("Size: {value}.", "Size {value}."),
        "label_size": ("Label size: {value}.", "The label says {value}."),
        "condition": ("Condition: {lower}.", "Overall condition: {lower}."),
        "condition_sup": ("Please note: {value}", "Condition notes: {value}"),
        "material": ("Material: {lower}.", "Made of {lower}."),
        "color": ("Colour: {lower}.", "Colour {lower}."),
        "fit": ("Fit: {lower}.",),
        "pattern": ("Pattern: {lower}.",),
        "style": ("Style: {lower}.", "A {lower} style."),
        "season": ("Season: {lower}.",),
        "gender": ("Department: {lower}.", "For {lower}."),
        "closure": ("Fastening: {lower}.", "Closure: {lower}."),
        "origin": ("Made in {value}.", "Origin: {value}."),
        "model": ("Model: {value}.", "Model name: {value}."),
        "decade": ("Era: {value}.", "A piece from the {value}."),
        "measurements": ("Measurements: {value}.", "Measured: {value}."),
        "sku": ("Ref. {value}", "Reference: {value}"),
    },
    closings=(
        "Feel free to ask any questions.",
        "Happy to answer any question.",
        "Questions welcome.",
        "",
    ),
    measurement_closings=("Compare the measurements with a piece you own before buying.",),
    list_intros=("Details:", "At a glance:", "Key facts:"),
)
