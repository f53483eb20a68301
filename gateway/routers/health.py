"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from sqlalchemy import text

from gateway.console.figures import metric_families, read_budgets, read_overview
from gateway.dependencies import Services
from ops.adapters import metrics_store

router = APIRouter(tags=["operations"])

PLATFORMS = ("vinted", "ebay", "etsy", "ai")


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is alive (no dependency is checked)."""
    return {"status": "ok"}


async def _check_postgres(services: Services) -> str:
    try:
        async with asyncio.timeout(2), services.db.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception:  # any failure means "not ready"
        return "unavailable"
    return "ok"


async def _check_redis(services: Services) -> str:
    try:
        async with asyncio.timeout(2):
            await services.redis.ping()
    except Exception:  # any failure means "not ready"
        return "unavailable"
    return "ok"


@router.get("/ready", responses={503: {"description": "PostgreSQL or Redis does not answer."}})
async def ready(services: Services) -> JSONResponse:
    """PostgreSQL and Redis both answer."""
    postgres, redis = await asyncio.gather(_check_postgres(services), _check_redis(services))
    checks = {"postgres": postgres, "redis": redis}
    if all(state == "ok" for state in checks.values()):
        return JSONResponse({"status": "ok", "checks": checks})
    return JSONResponse({"status": "unavailable", "checks": checks}, status_code=503)


@router.get("/metrics", response_class=Response)
async def metrics(services: Services) -> Response:
    """Prometheus text format: this gateway's HTTP metrics plus the platform-wide job metrics."""
    body = generate_latest(REGISTRY)
    try:
        async with asyncio.timeout(2):
            families = await metrics_store.read_families(services.redis, PLATFORMS)
            overview = await read_overview(services.redis)
            async with services.db.session_factory() as session:
                budgets = await read_budgets(session, services.redis, services.settings)
            families += metric_families(overview, budgets)
    except Exception:  # Redis or PostgreSQL down: still serve what this process knows
        return Response(body, media_type=CONTENT_TYPE_LATEST)
    shared = CollectorRegistry(auto_describe=False)
    shared.register(metrics_store.SnapshotCollector(families))
    return Response(body + generate_latest(shared), media_type=CONTENT_TYPE_LATEST)
