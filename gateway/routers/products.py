"""/api/products: the catalogue's products (create, list, read, partial update, soft delete, status).

Decisions where the contract is silent:
- PATCH never changes `status`: a body naming it is 422, pointing at POST /api/products/{id}/status, so
  every status change goes through the lifecycle rules and its delist hook.
- A PATCH that changes nothing (empty body, or the same values) does not bump `version`.
- `If-Match` is also honoured (optionally) by DELETE and POST …/status.
- List items carry the product fields only; `images` and `listings` are on GET /api/products/{id}.
- Where checks compete: 404, then 409 `invalid_state`/`invalid_transition`, then 409 `out_of_stock`,
  then 412 `version_conflict`, then attribute codes (422), 409 `sku_taken`, 403 `quota_exceeded`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from domain.attributes import PRODUCT_ATTRIBUTE_FIELDS
from domain.errors import InvalidState, NotFound, VersionConflict
from domain.lifecycle import ProductStatus, change_status
from domain.sales import SaleSource
from gateway import publishing
from gateway.dependencies import CurrentPrincipal, Services, TenantSession, UnitOfWorkRoute
from gateway.pagination import Page
from gateway.problems import ProblemError
from gateway.request_input import parse_path_id
from gateway.schemas.products import (
    ImageOut,
    ListingOut,
    ProductCreate,
    ProductDetail,
    ProductList,
    ProductOut,
    ProductUpdate,
    StatusChangeRequest,
)
from gateway.services import GatewayServices
from ops.adapters.media_urls import image_url
from persistence import products as repository
from persistence import sales
from persistence.attributes import unknown_attribute_fields
from persistence.product_edits import edit_product
from persistence.products import Platform, ProductFilters
from persistence.tenant_models import Product

router = APIRouter(prefix="/api/products", tags=["catalogue"], route_class=UnitOfWorkRoute)

_ENTITY_TAG = re.compile(r'^(?:W/)?"([0-9]{1,10})"$')
_NOT_FOUND = "No such product."

_PRODUCT_RESPONSES: dict[int | str, dict[str, Any]] = {404: {"description": "not_found"}}
IfMatch = Annotated[
    str | None,
    Header(description='`"<version>"`, `W/"<version>"` or `*`; a mismatch is 412 `version_conflict`.'),
]


async def product_id_of(product_id: Annotated[str, Path(description="The product's integer id.")]) -> int:
    """Parse the path id; anything that cannot be one of our ids is simply not found."""
    parsed = parse_path_id(product_id)
    if parsed is None:
        raise NotFound(_NOT_FOUND)
    return parsed


ProductId = Annotated[int, Depends(product_id_of)]


def entity_tag(version: int) -> str:
    return f'"{version}"'


def check_if_match(if_match: str | None, version: int) -> None:
    """Refuse the change unless `If-Match` is absent, `*`, or names the current version."""
    if if_match is None or if_match.strip() == "*":
        return
    versions: list[int] = []
    for candidate in if_match.split(","):
        match = _ENTITY_TAG.fullmatch(candidate.strip())
        if match is None:
            raise VersionConflict('If-Match must be "<version>", W/"<version>" or *.')
        versions.append(int(match.group(1)))
    if version not in versions:
        raise VersionConflict(f"The product changed: it is at version {version}; reload it and retry.")


async def _live_product(session: AsyncSession, product_id: int, *, for_update: bool = False) -> Product:
    product = await repository.get_live_product(session, product_id, for_update=for_update)
    if product is None:
        raise NotFound(_NOT_FOUND)
    return product


async def _check_attribute_codes(session: AsyncSession, values: dict[str, Any]) -> None:
    unknown = await unknown_attribute_fields(session, values)
    if not unknown:
        return
    errors = [
        {
            "loc": ["body", field],
            "msg": f"no {PRODUCT_ATTRIBUTE_FIELDS[field]} has the code {values[field]!r}",
        }
        for field in unknown
    ]
    raise ProblemError(
        422,
        "unknown_attribute",
        f"Unknown attribute code for {', '.join(unknown)}: see GET /api/attributes/{{kind}}.",
        errors=errors,
    )


async def _detail(session: AsyncSession, services: GatewayServices, product: Product) -> ProductDetail:
    images = [
        ImageOut.from_row(image, image_url(services.settings, image.storage_key))
        for image in await repository.images_of(session, product.id)
    ]
    listings = [ListingOut.model_validate(row) for row in await repository.listings_of(session, product.id)]
    orders = await sales.oversold_orders(session, product.id) if product.oversold else []
    return ProductDetail(
        **ProductOut.fields_of(product), oversold_orders=orders, images=images, listings=listings
    )


@router.post(
    "",
    status_code=201,
    responses={
        403: {"description": "quota_exceeded"},
        409: {"description": "sku_taken"},
        422: {"description": "validation_error, unknown_attribute"},
    },
)
async def create_product(
    body: ProductCreate,
    principal: CurrentPrincipal,
    session: TenantSession,
    services: Services,
    response: Response,
) -> ProductDetail:
    """Create a draft product."""
    values = body.model_dump()
    await _check_attribute_codes(session, values)
    product = await repository.create_product(session, principal.tenant_id, values)
    response.headers["ETag"] = entity_tag(product.version)
    response.headers["Location"] = f"/api/products/{product.id}"
    return await _detail(session, services, product)


@router.get("", responses={422: {"description": "validation_error, invalid_cursor"}})
async def list_products(
    session: TenantSession,
    page: Page,
    status: ProductStatus | None = None,
    q: Annotated[
        str | None,
        Query(max_length=100, description="Case-insensitive substring of the title or SKU, taken literally."),
    ] = None,
    platform: Annotated[
        Platform | None,
        Query(description="Products with a listing on this platform (none until publications exist)."),
    ] = None,
    brand: Annotated[str | None, Query(max_length=64, description="A brand code.")] = None,
    category: Annotated[str | None, Query(max_length=64, description="A category code (exact).")] = None,
) -> ProductList:
    """List live products, newest first."""
    filters = ProductFilters(status=status, q=q or None, platform=platform, brand=brand, category=category)
    rows, more = await repository.list_products(session, filters, limit=page.limit, before_id=page.before_id)
    next_cursor = page.next_cursor(rows[-1].id) if more else None
    items = [
        ProductOut(
            **ProductOut.fields_of(row),
            oversold_orders=await sales.oversold_orders(session, row.id) if row.oversold else [],
        )
        for row in rows
    ]
    return ProductList(items=items, next_cursor=next_cursor)


@router.get("/{product_id}", responses=_PRODUCT_RESPONSES)
async def get_product(
    product_id: ProductId, session: TenantSession, services: Services, response: Response
) -> ProductDetail:
    """Return one product with its images and listings."""
    product = await _live_product(session, product_id)
    response.headers["ETag"] = entity_tag(product.version)
    return await _detail(session, services, product)


@router.patch(
    "/{product_id}",
    responses={
        **_PRODUCT_RESPONSES,
        409: {"description": "invalid_state, sku_taken"},
        412: {"description": "version_conflict"},
        422: {"description": "validation_error, unknown_attribute"},
    },
)
async def update_product(
    product_id: ProductId,
    body: ProductUpdate,
    session: TenantSession,
    services: Services,
    principal: CurrentPrincipal,
    response: Response,
    if_match: IfMatch = None,
) -> ProductDetail:
    """Change the fields sent; null clears an optional field. Live listings get an `update` job."""
    product = await _live_product(session, product_id, for_update=True)
    if product.status == ProductStatus.ARCHIVED:
        raise InvalidState("An archived product cannot be changed.")
    check_if_match(if_match, product.version)
    changes = body.changes()
    await _check_attribute_codes(session, changes)
    coalesce = timedelta(seconds=services.settings.update_coalesce_seconds)
    await edit_product(session, principal.tenant_id, product, changes, coalesce=coalesce)
    response.headers["ETag"] = entity_tag(product.version)
    return await _detail(session, services, product)


@router.delete(
    "/{product_id}",
    status_code=204,
    response_class=Response,
    responses={**_PRODUCT_RESPONSES, 412: {"description": "version_conflict"}},
)
async def delete_product(
    product_id: ProductId, session: TenantSession, principal: CurrentPrincipal, if_match: IfMatch = None
) -> Response:
    """Soft-delete a product: it is gone from every read and frees its SKU."""
    product = await _live_product(session, product_id, for_update=True)
    check_if_match(if_match, product.version)
    if product.status == ProductStatus.PUBLISHED:
        # A deleted product must not stay on sale anywhere.
        await publishing.delist_everywhere(session, principal.tenant_id, product)
    await repository.soft_delete_product(session, product)
    return Response(status_code=204)


@router.post(
    "/{product_id}/status",
    responses={
        **_PRODUCT_RESPONSES,
        409: {"description": "invalid_transition, out_of_stock"},
        412: {"description": "version_conflict"},
    },
)
async def change_product_status(
    product_id: ProductId,
    body: StatusChangeRequest,
    session: TenantSession,
    services: Services,
    principal: CurrentPrincipal,
    response: Response,
    if_match: IfMatch = None,
) -> ProductDetail:
    """Move the product through its lifecycle; selling or archiving takes its listings down."""
    product = await _live_product(session, product_id, for_update=True)
    now = await repository.transaction_now(session)
    change = change_status(repository.lifecycle_state(product), body.status, now=now)
    check_if_match(if_match, product.version)
    if change.status is ProductStatus.SOLD:
        # The user's sale is a sale like any other: recorded once, the whole stock, every listing down.
        await sales.record_sale(
            session,
            principal.tenant_id,
            product,
            platform=sales.USER_PLATFORM,
            order_id=sales.user_order_id(),
            source=SaleSource.USER,
            quantity=max(product.stock_quantity, 1),
        )
    else:
        await repository.apply_status_change(session, product, change)
        if change.delist_due:
            await publishing.delist_everywhere(session, principal.tenant_id, product)
    response.headers["ETag"] = entity_tag(product.version)
    return await _detail(session, services, product)
