"""AI descriptions: `POST /api/products/{id}/description` and `GET /api/ai/credits`.

Decisions where the contract is silent:
- The job and its credit commit together: a 202 has spent exactly one credit, a refusal none.
- Order of checks: 404, then 409 `invalid_state` (an archived product cannot take the text), then 402.
- `platforms` defaults to the three marketplaces; the product's own title is the one for the tightest
  limit among them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from domain.errors import InvalidState, NotFound
from domain.jobs import JobAction, Platform
from domain.lifecycle import ProductStatus
from gateway.dependencies import CurrentPrincipal, TenantSession, UnitOfWorkRoute
from gateway.routers.products import ProductId
from gateway.schemas.descriptions import CreditsOut, DescriptionRequest
from gateway.schemas.jobs import JobOut
from persistence import ai_credits, queue
from persistence.products import get_live_product

router = APIRouter(tags=["ai"], route_class=UnitOfWorkRoute)

_RESPONSES: dict[int | str, dict[str, Any]] = {
    402: {"description": "no_ai_credits: this month's AI credits are spent"},
    404: {"description": "not_found"},
    409: {"description": "invalid_state: an archived product cannot take a description"},
}


@router.post("/api/products/{product_id}/description", status_code=202, responses=_RESPONSES)
async def generate_description(
    product_id: ProductId, body: DescriptionRequest, principal: CurrentPrincipal, session: TenantSession
) -> JobOut:
    """Write a title and description with AI (`generate_description` job on the `ai` pool); costs 1 credit."""
    product = await get_live_product(session, product_id)
    if product is None:
        raise NotFound("No such product.")
    if body.apply and product.status == ProductStatus.ARCHIVED:
        raise InvalidState("An archived product cannot be changed; send apply: false to only get the text.")
    payload: dict[str, Any] = {"language": body.language, "apply": body.apply}
    if body.platforms is not None:
        payload["platforms"] = body.platforms
    job = await queue.enqueue_job(
        session,
        tenant_id=principal.tenant_id,
        platform=Platform.AI,
        action=JobAction.GENERATE_DESCRIPTION,
        product_id=product.id,
        payload=payload,
    )
    await ai_credits.charge_for_job(session, principal.tenant_id, job.id)
    return JobOut.of(job)


@router.get("/api/ai/credits")
async def credits(principal: CurrentPrincipal, session: TenantSession) -> CreditsOut:
    """The AI credits left in this billing period, and when they renew."""
    balance = await ai_credits.read_balance(session, principal.tenant_id)
    return CreditsOut(monthly=balance.monthly, remaining=balance.remaining, resets_at=balance.period.end)
