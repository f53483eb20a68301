"""Our shared attribute vocabulary: the kinds of reference data and which product field takes which."""

from __future__ import annotations

#: Attribute kinds, each a table of `product_attributes` and a data file of ops/config/reference_data.
ATTRIBUTE_KINDS: tuple[str, ...] = (
    "categories",
    "brands",
    "colors",
    "sizes",
    "conditions",
    "materials",
    "fits",
    "genders",
    "seasons",
    "closures",
    "decades",
    "patterns",
    "styles",
    "origins",
)

#: Product field -> the attribute kind whose code it holds (label_size is free text: what the label says).
PRODUCT_ATTRIBUTE_FIELDS: dict[str, str] = {
    "category": "categories",
    "brand": "brands",
    "size": "sizes",
    "color": "colors",
    "material": "materials",
    "fit": "fits",
    "gender": "genders",
    "season": "seasons",
    "condition": "conditions",
    "decade": "decades",
    "closure": "closures",
    "origin": "origins",
    "pattern": "patterns",
    "style": "styles",
}
