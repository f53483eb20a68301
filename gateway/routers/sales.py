"""/api/sales: every sale, newest first, with what it did to the other marketplaces' listings."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import and_, or_, select

from gateway.dependencies import Services, TenantSession, UnitOfWorkRoute
from gateway.pagination import DEFAULT_LIMIT, MAX_LIMIT, CursorCodec
from gateway.problems import ProblemError
from gateway.schemas.sales import SaleOut, SalePage
from persistence import sales
from persistence.tenant_models import Sale

router = APIRouter(prefix="/api/sales", tags=["sales"], route_class=UnitOfWorkRoute)


@router.get("")
async def list_sales(
    session: TenantSession,
    services: Services,
    product_id: Annotated[int | None, Query(ge=1)] = None,
    platform: Annotated[str | None, Query(pattern="^(vinted|ebay|etsy|stoflow)$")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> SalePage:
    """Sales, newest first; `outcomes` follows the delist/update jobs each sale caused."""
    codec = CursorCodec(services.settings.stoflow_secret_key.get_secret_value().encode())
    statement = select(Sale)
    if cursor is not None:
        position = codec.decode(cursor)
        try:
            detected = datetime.fromisoformat(str(position["detected_at"]))
            last_id = int(str(position["id"]))
        except (KeyError, ValueError):
            raise ProblemError(422, "invalid_cursor", "The cursor is not one this API issued.") from None
        statement = statement.where(
            or_(Sale.detected_at < detected, and_(Sale.detected_at == detected, Sale.id < last_id))
        )
    if product_id is not None:
        statement = statement.where(Sale.product_id == product_id)
    if platform is not None:
        statement = statement.where(Sale.platform == platform)
    rows = list(
        await session.scalars(statement.order_by(Sale.detected_at.desc(), Sale.id.desc()).limit(limit + 1))
    )
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = codec.encode({"detected_at": last.detected_at.isoformat(), "id": last.id})
    outcomes = await sales.outcomes_of(session, [sale.id for sale in page])
    return SalePage(items=[SaleOut.of(sale, outcomes[sale.id]) for sale in page], next_cursor=next_cursor)
