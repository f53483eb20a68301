"""The FastAPI application: middleware, problem handlers, routers, and the services' lifespan."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from gateway.console import page as console_page
from gateway.middleware import (
    BodyLimitMiddleware,
    ErrorBoundaryMiddleware,
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
)
from gateway.problems import COMMON_RESPONSES, install_problem_handlers
from gateway.routers import (
    attributes,
    auth,
    descriptions,
    health,
    images,
    imports,
    integrations,
    jobs,
    ops,
    plugin,
    products,
    publications,
    sales,
    webhooks,
)
from gateway.services import build_services
from ops.config.settings import Settings
from persistence.accounts import TenantSchemaMigrator

# Multipart carries images of up to 10 MB plus form overhead.
MULTIPART_LIMIT = 11 * 1024 * 1024


def create_app(settings: Settings, *, tenant_migrator: TenantSchemaMigrator) -> FastAPI:
    """Build the gateway; `tenant_migrator` creates each registering tenant's schema.

    The caller wires it (`stoflow api` passes `migrations.runner.upgrade_tenant_schema`), so the gateway
    reaches the migrations only through that interface.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings, tenant_migrator)
        await services.start()
        app.state.services = services
        # What start-up built (routes, models, schemas) lives as long as the process: out of the cyclic
        # collector's way, so that its full collections under load walk only what requests allocate.
        gc.freeze()
        try:
            yield
        finally:
            await services.close()

    app = FastAPI(
        title="Stoflow API",
        version="1.0.0",
        description=(
            "Write a product once; Stoflow publishes it to Vinted, eBay and Etsy. Errors are RFC 9457 "
            "problem documents with a machine-readable `code`."
        ),
        lifespan=lifespan,
        responses=COMMON_RESPONSES,
    )
    install_problem_handlers(app)
    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(attributes.router)
    app.include_router(products.router)
    app.include_router(images.router)
    app.include_router(images.media_router)
    app.include_router(publications.router)
    app.include_router(imports.router)
    app.include_router(descriptions.router)
    app.include_router(jobs.router)
    app.include_router(integrations.router)
    app.include_router(plugin.router)
    app.include_router(ops.router)
    app.include_router(console_page.router)
    app.include_router(sales.router)
    app.include_router(webhooks.router)

    # Outermost last: context/logging wraps everything, so even a refused body is logged with an id.
    app.add_middleware(ErrorBoundaryMiddleware)
    app.add_middleware(
        BodyLimitMiddleware, json_limit=settings.max_json_body_bytes, multipart_limit=MULTIPART_LIMIT
    )
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "If-Match", "X-Request-Id"],
            expose_headers=["ETag", "Retry-After", "X-Request-Id", "Location"],
            max_age=600,
        )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestContextMiddleware)
    return app
