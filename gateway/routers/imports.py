"""/api/imports: turn a marketplace account's existing listings into linked products (an `import` job)."""

from __future__ import annotations

from fastapi import APIRouter

from gateway import publishing
from gateway.dependencies import CurrentPrincipal, TenantSession, UnitOfWorkRoute
from gateway.schemas.jobs import ImportRequest, JobOut

router = APIRouter(prefix="/api/imports", tags=["imports"], route_class=UnitOfWorkRoute)


@router.post(
    "",
    status_code=202,
    responses={
        409: {"description": "platform_not_connected"},
        422: {"description": "validation_error, unknown_account or account_required"},
    },
)
async def import_listings(body: ImportRequest, principal: CurrentPrincipal, session: TenantSession) -> JobOut:
    """Start an import: its job's `result` counts `created`, `linked`, `skipped` and `needs_review`.

    Vinted: the wardrobe is read through the plugin, one request (one slot of the member's budget) per page
    of 96 items. eBay: inventory items and their offers through the Sell Inventory API. An import of the
    same platform (and Vinted account) still unfinished is answered instead of starting a second one.
    """
    job = await publishing.start_import(session, principal.tenant_id, body.platform, body.vinted_account_id)
    return JobOut.of(job)
