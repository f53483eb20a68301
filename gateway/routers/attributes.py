"""/api/attributes/{kind}: the shared reference codes that product attribute fields take."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from domain.attributes import ATTRIBUTE_KINDS
from domain.errors import NotFound
from gateway.dependencies import CurrentPrincipal, PublicSession, UnitOfWorkRoute
from persistence.attributes import list_attributes

router = APIRouter(prefix="/api/attributes", tags=["catalogue"], route_class=UnitOfWorkRoute)


class AttributeOut(BaseModel):
    code: str
    name_en: str
    name_fr: str


class CategoryOut(AttributeOut):
    #: The parent category's code; null for a top-level category.
    parent: str | None


class AttributeList(BaseModel):
    items: list[CategoryOut] | list[AttributeOut]


@router.get("/{kind}", responses={404: {"description": "not_found (unknown kind)"}})
async def list_attribute_kind(
    kind: str, _principal: CurrentPrincipal, session: PublicSession
) -> AttributeList:
    """List every code of one attribute kind, whole (no pagination: these lists are short)."""
    if kind not in ATTRIBUTE_KINDS:
        raise NotFound(f"No attribute kind {kind!r}; kinds: {', '.join(ATTRIBUTE_KINDS)}.")
    rows = await list_attributes(session, kind)
    if kind == "categories":
        return AttributeList(items=[CategoryOut(**row) for row in rows])
    return AttributeList(items=[AttributeOut(**row) for row in rows])
