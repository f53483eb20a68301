"""Bodies and answers of /api/products.

Field rules come from domain/products.py; attribute codes are checked against the database by the router.
Money goes out as a decimal string with 2 places (`"19.90"`); measurements (`dim1`..`dim6`) as numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from domain.errors import InvalidValue
from domain.lifecycle import ProductStatus
from domain.products import (
    DEFAULT_CURRENCY,
    validate_cost_price,
    validate_currency,
    validate_price,
    validate_sku,
    validate_title,
)
from persistence.tenant_models import Product, ProductImage

_T = TypeVar("_T")


def _rule(rule: Callable[[_T], _T]) -> AfterValidator:
    """Run a domain rule as a pydantic validator, so its failure is an ordinary 422 `validation_error`."""

    def apply(value: _T) -> _T:
        try:
            return rule(value)
        except InvalidValue as error:
            raise ValueError(error.detail) from None

    return AfterValidator(apply)


Title = Annotated[str, _rule(validate_title)]
Price = Annotated[Decimal, Field(allow_inf_nan=False), _rule(validate_price)]
CostPrice = Annotated[Decimal, Field(allow_inf_nan=False), _rule(validate_cost_price)]
Currency = Annotated[str, _rule(validate_currency)]
Sku = Annotated[str, _rule(validate_sku)]
StockQuantity = Annotated[int, Field(ge=0, le=1_000_000)]
AttributeCode = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Description = Annotated[str, StringConstraints(max_length=10_000)]
ConditionNote = Annotated[str, StringConstraints(max_length=2_000)]
ModelName = Annotated[str, StringConstraints(max_length=200)]
#: Numeric(8, 1) in centimetres.
Dimension = Annotated[Decimal, Field(ge=0, max_digits=8, decimal_places=1, allow_inf_nan=False)]

#: Fields a client may not set to null: the product cannot exist without them.
_REQUIRED_FIELDS = ("title", "price", "currency", "stock_quantity", "sku")


class _ProductFields(BaseModel):
    """The optional fields shared by creation and update."""

    model_config = ConfigDict(extra="forbid")

    sku: Sku | None = Field(default=None, description="Unique among your live products; generated if absent.")
    description: Description | None = None
    cost_price: CostPrice | None = None
    category: AttributeCode | None = None
    brand: AttributeCode | None = None
    size: AttributeCode | None = None
    color: AttributeCode | None = None
    material: AttributeCode | None = None
    fit: AttributeCode | None = None
    gender: AttributeCode | None = None
    season: AttributeCode | None = None
    condition: AttributeCode | None = None
    label_size: AttributeCode | None = None
    decade: AttributeCode | None = None
    closure: AttributeCode | None = None
    condition_sup: ConditionNote | None = None
    model: ModelName | None = None
    origin: AttributeCode | None = None
    pattern: AttributeCode | None = None
    style: AttributeCode | None = None
    dim1: Dimension | None = None
    dim2: Dimension | None = None
    dim3: Dimension | None = None
    dim4: Dimension | None = None
    dim5: Dimension | None = None
    dim6: Dimension | None = None


class ProductCreate(_ProductFields):
    """A new product; it starts as a draft."""

    title: Title
    price: Price
    currency: Currency = DEFAULT_CURRENCY
    stock_quantity: StockQuantity = 1


class ProductUpdate(_ProductFields):
    """A partial update: only the fields sent change; null clears an optional field."""

    title: Title | None = None
    price: Price | None = None
    currency: Currency | None = None
    stock_quantity: StockQuantity | None = None
    status: Any = Field(
        default=None,
        json_schema_extra={"deprecated": True},
        description="Not accepted here: change the status with POST /api/products/{id}/status.",
    )

    @field_validator(*_REQUIRED_FIELDS, mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may not be null")
        return value

    @field_validator("status", mode="before")
    @classmethod
    def _no_status(cls, value: object) -> object:
        raise ValueError("change the status with POST /api/products/{id}/status")

    def changes(self) -> dict[str, Any]:
        """Return the fields the client sent, with their validated values."""
        return self.model_dump(exclude_unset=True, exclude={"status"})


class StatusChangeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: ProductStatus


class ImageOut(BaseModel):
    id: int
    url: str
    display_order: int
    width: int
    height: int
    created_at: datetime

    @classmethod
    def from_row(cls, image: ProductImage, url: str) -> ImageOut:
        return cls(
            id=image.id,
            url=url,
            display_order=image.display_order,
            width=image.width,
            height=image.height,
            created_at=image.created_at,
        )


class ListingOut(BaseModel):
    platform: Literal["vinted", "ebay", "etsy"]
    status: Literal["pending", "live", "sold", "delisted", "failed"]
    external_id: str | None
    url: str | None
    published_at: datetime | None
    last_synced_at: datetime | None


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def _measure(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


class ProductOut(BaseModel):
    id: int
    sku: str
    title: str
    description: str | None
    price: str = Field(examples=["19.90"])
    cost_price: str | None
    currency: str
    stock_quantity: int
    category: str | None
    brand: str | None
    size: str | None
    color: str | None
    material: str | None
    fit: str | None
    gender: str | None
    season: str | None
    condition: str | None
    label_size: str | None
    decade: str | None
    closure: str | None
    condition_sup: str | None
    model: str | None
    origin: str | None
    pattern: str | None
    style: str | None
    dim1: float | None
    dim2: float | None
    dim3: float | None
    dim4: float | None
    dim5: float | None
    dim6: float | None
    status: ProductStatus
    version: int
    published_at: datetime | None
    sold_at: datetime | None
    created_at: datetime
    updated_at: datetime
    #: A sale arrived with no stock left (two marketplaces sold the last unit): see `oversold_orders`.
    oversold: bool = False
    oversold_orders: list[dict[str, Any]] = Field(default_factory=list)
    needs_review: dict[str, Any] = Field(
        default_factory=dict, description="Imported values that could not be mapped: {field: raw value}."
    )

    @classmethod
    def fields_of(cls, product: Product) -> dict[str, Any]:
        """Return the answer's fields read from a product row."""
        plain = {
            name: getattr(product, name)
            for name in cls.model_fields
            if name not in {"price", "cost_price", "oversold_orders"}
            and not name.startswith("dim")
            and hasattr(product, name)
        }
        measures = {f"dim{index}": _measure(getattr(product, f"dim{index}")) for index in range(1, 7)}
        return {
            **plain,
            **measures,
            "price": _money(product.price),
            "cost_price": _money(product.cost_price),
            "needs_review": dict(product.needs_review or {}),
        }

    @classmethod
    def from_row(cls, product: Product) -> ProductOut:
        return cls(**cls.fields_of(product))


class ProductDetail(ProductOut):
    """One product with its images and marketplace listings."""

    images: list[ImageOut]
    listings: list[ListingOut]


class ProductList(BaseModel):
    items: list[ProductOut]
    next_cursor: str | None
