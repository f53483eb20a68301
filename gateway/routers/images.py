"""/api images routes (being built)."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.dependencies import UnitOfWorkRoute

router = APIRouter(tags=["catalogue"], route_class=UnitOfWorkRoute)
