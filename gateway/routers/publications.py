"""/api/products/{id}/publications: publish, update, delist commands and the listing history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from domain.errors import NotFound
from gateway import publishing
from gateway.dependencies import CurrentPrincipal, TenantSession, UnitOfWorkRoute
from gateway.request_input import parse_path_id
from gateway.schemas.jobs import (
    HistoryOut,
    JobOut,
    JobsAccepted,
    ListingOut,
    MarketplaceName,
    PublicationsOut,
    PublishRequest,
)
from persistence import listings
from persistence.products import get_live_product
from persistence.tenant_models import Product

router = APIRouter(prefix="/api/products", tags=["publications"], route_class=UnitOfWorkRoute)

_COMMAND_ERRORS: dict[int | str, dict[str, str]] = {
    404: {"description": "not_found"},
    409: {"description": "invalid_state, out_of_stock, platform_not_connected, already_listed or not_listed"},
    403: {"description": "quota_exceeded (the tier's max_platforms)"},
    422: {"description": "validation_error, unknown_account or account_required"},
}


async def _product_id(product_id: Annotated[str, Path(description="The product's integer id.")]) -> int:
    parsed = parse_path_id(product_id)
    if parsed is None:
        raise NotFound("No such product.")
    return parsed


ProductId = Annotated[int, Depends(_product_id)]


async def _locked_product(session: TenantSession, product_id: int) -> Product:
    product = await get_live_product(session, product_id, for_update=True)
    if product is None:
        raise NotFound("No such product.")
    return product


@router.post("/{product_id}/publications", status_code=202, responses=_COMMAND_ERRORS)
async def publish_product(
    product_id: ProductId, body: PublishRequest, principal: CurrentPrincipal, session: TenantSession
) -> JobsAccepted:
    """Publish to one or more platforms: one `publish` job each. A draft becomes published."""
    jobs = await publishing.publish(
        session, principal.tenant_id, product_id, body.platforms, body.vinted_account_id
    )
    return JobsAccepted(jobs=[JobOut.of_row(job) for job in jobs])


@router.put("/{product_id}/publications/{platform}", status_code=202, responses=_COMMAND_ERRORS)
async def update_publication(
    product_id: ProductId, platform: MarketplaceName, principal: CurrentPrincipal, session: TenantSession
) -> JobOut:
    """Push the current product to its live listing (`update` job)."""
    product = await _locked_product(session, product_id)
    return JobOut.of(await publishing.update_listing(session, principal.tenant_id, product, platform))


@router.delete("/{product_id}/publications/{platform}", status_code=202, responses=_COMMAND_ERRORS)
async def delist_publication(
    product_id: ProductId, platform: MarketplaceName, principal: CurrentPrincipal, session: TenantSession
) -> JobOut:
    """End the live listing (`delist` job)."""
    product = await _locked_product(session, product_id)
    return JobOut.of(await publishing.delist(session, principal.tenant_id, product, platform))


@router.get("/{product_id}/publications", responses={404: {"description": "not_found"}})
async def publications_of(product_id: ProductId, session: TenantSession) -> PublicationsOut:
    """The product's listings and its publication attempts, newest first."""
    product = await get_live_product(session, product_id)
    if product is None:
        raise NotFound("No such product.")
    return PublicationsOut(
        listings=[ListingOut.of(row) for row in await listings.listings_of(session, product_id)],
        history=[HistoryOut.of(row) for row in await listings.history_of(session, product_id)],
    )
