"""/api/products/{id}/publications: publish, update, delist commands and the listing history."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Path, Response
from pydantic import ValidationError

from domain.errors import NotFound
from gateway import idempotency, publishing
from gateway.dependencies import (
    BEARER_CHALLENGE,
    CurrentPrincipal,
    TenantSession,
    UnitOfWorkRoute,
    UseUnitOfWork,
    bearer_token,
    raw_path,
    raw_transaction,
)
from gateway.problems import ProblemError
from gateway.request_input import StrictJsonRequest, parse_path_id
from gateway.schemas.jobs import (
    HistoryOut,
    JobOut,
    JobsAccepted,
    ListingOut,
    MarketplaceName,
    PublicationsOut,
    PublishRequest,
)
from gateway.services import GatewayServices
from gateway.tokens import InvalidToken
from persistence import listings, queue
from persistence.products import get_live_product
from persistence.publication_facts import lock_for_login
from persistence.tenancy import tenant_schema
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


async def _publish_on_raw_pool(request: StrictJsonRequest, services: GatewayServices) -> Response | None:
    """The publish command's common case, on the raw pool: four round trips (BEGIN; the login check, the
    product's lock and the rules' facts in one statement; the write; COMMIT), no session, no dependency
    solving. The same rules (`publishing.plan_publish`) and the same answers; an Idempotency-Key, an
    operator's token, a body FastAPI would refuse, the quota and `already_listed` go to the unit of work
    (None), which answers them from the start as before.
    """
    if idempotency.HEADER in request.headers:
        return None
    product_id = parse_path_id(request.path_params["product_id"])
    document = request.decoded_json()
    if product_id is None or not isinstance(document, dict):
        return None
    try:
        body = PublishRequest.model_validate(document)
    except ValidationError:
        return None
    # The unit of work's order from here: the token, then the login, then the product, then the rules.
    try:
        claims = services.tokens.decode_access(bearer_token(request))
    except InvalidToken:
        raise ProblemError(
            401, "invalid_token", "The access token is not valid.", headers=BEARER_CHALLENGE
        ) from None
    tenant_id = claims.tenant_id
    if tenant_id is None:
        return None
    structlog.contextvars.bind_contextvars(tenant_id=tenant_id, user_id=claims.user_id)
    schema = tenant_schema(services.settings.tenant_schema_prefix, tenant_id)
    requested: list[str] = list(dict.fromkeys(body.platforms))

    async def publish(connection: Any) -> list[Mapping[str, Any]]:
        found = await lock_for_login(
            connection,
            schema,
            tenant_id=tenant_id,
            product_id=product_id,
            vinted_account_id=body.vinted_account_id,
            session_id=claims.session_id,
            user_id=claims.user_id,
        )
        if found is None:
            raise ProblemError(
                401, "invalid_token", "The access token was revoked.", headers=BEARER_CHALLENGE
            )
        if found.facts is None:
            raise NotFound("No such product.")
        plan = publishing.plan_publish(found.facts, requested, body.vinted_account_id)
        if plan.quota is not None:
            raise UseUnitOfWork  # `already_listed` answers before the quota: the unit of work reads it
        jobs = await queue.enqueue_publishes_in(
            connection,
            schema,
            tenant_id=tenant_id,
            product_id=product_id,
            publishes=plan.publishes,
            status_change=plan.status_change,
        )
        if jobs is None:
            raise UseUnitOfWork  # already listed on one platform: the unit of work names which
        return jobs

    jobs = await raw_transaction(services, publish)
    if jobs is None:
        return None
    accepted = JobsAccepted(jobs=[JobOut.of_row(job) for job in jobs])
    return Response(accepted.model_dump_json(), status_code=202, media_type="application/json")


@router.post("/{product_id}/publications", status_code=202, responses=_COMMAND_ERRORS)
@raw_path(_publish_on_raw_pool)
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
