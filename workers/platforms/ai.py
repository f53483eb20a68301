"""The `ai` pool's adapter: write a product's title and description, and apply them to the product.

Two steps, each saved in the job's progress before the next starts, so that a run that dies after
either one does not redo it: the written copy (a re-run never pays a provider twice) and its
application to the product (a normal versioned edit, whose live listings get their `update` jobs).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from domain.description_templates import Language, ProductFacts
from domain.jobs import MARKETPLACES
from domain.lifecycle import ProductStatus
from domain.text_policy import check_listing_text
from persistence.ai_generation_log import GenerationRecord, record_generations
from persistence.attributes import attribute_names
from persistence.product_edits import edit_product
from persistence.products import get_live_product
from persistence.tenancy import tenant_transaction
from persistence.tenant_models import Product
from workers.descriptions import CopyRequest, DescriptionWriter, WritingFailed
from workers.errors import PermanentPlatformError, TransientPlatformError
from workers.platforms.base import JobInput, ListingOutcome

if TYPE_CHECKING:
    from workers.context import WorkerApp

log = structlog.get_logger(__name__)

PRODUCT_CHANGED = "product_changed"
AI_PROVIDER_FAILED = "ai_provider_failed"


@dataclass(frozen=True)
class DescriptionOrder:
    """What the user asked for (the job's payload)."""

    language: Language
    platforms: tuple[str, ...]
    apply: bool

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> DescriptionOrder:
        language = payload.get("language", "fr")
        platforms = tuple(payload.get("platforms") or [str(platform) for platform in MARKETPLACES])
        return cls(
            language="en" if language == "en" else "fr",
            platforms=platforms,
            apply=bool(payload.get("apply", True)),
        )


def facts_of(product: Product, names: dict[str, str], language: Language) -> ProductFacts:
    """The facts copy may state: attribute names (a code missing from the reference data is left out)."""
    dimensions = (product.dim1, product.dim2, product.dim3, product.dim4, product.dim5, product.dim6)
    measurements = tuple(value for value in dimensions if value is not None)
    return ProductFacts(
        product_id=product.id,
        language=language,
        sku=product.sku,
        label_size=product.label_size,
        model=product.model,
        condition_sup=product.condition_sup,
        measurements=measurements,
        **{field: names.get(field) for field in _NAMED_FIELDS},
    )


_NAMED_FIELDS = (
    "category", "brand", "size", "color", "material", "fit", "gender", "season", "condition", "decade",
    "closure", "origin", "pattern", "style",
)  # fmt: skip


class DescriptionAdapter:
    """Runs `generate_description` jobs; the marketplace commands have no meaning on this pool."""

    def __init__(self, app: WorkerApp, writer: DescriptionWriter) -> None:
        self.app = app
        self.writer = writer

    async def aclose(self) -> None:
        await self.writer.aclose()

    @asynccontextmanager
    async def _tenant(self, tenant_id: int) -> AsyncIterator[AsyncSession]:
        settings = self.app.settings
        async with tenant_transaction(
            self.app.db.session_factory, settings.tenant_schema_prefix, tenant_id
        ) as session:
            yield session

    async def publish(self, job: JobInput) -> ListingOutcome:
        raise PermanentPlatformError(
            "platform_rejected", "The ai pool writes descriptions; it lists nothing."
        )

    async def update(self, job: JobInput) -> ListingOutcome:
        return await self.publish(job)

    async def delist(self, job: JobInput) -> ListingOutcome:
        return await self.publish(job)

    async def generate_description(self, job: JobInput) -> ListingOutcome:
        """Write the copy (or take the one an earlier run saved), then apply it unless asked not to."""
        order = DescriptionOrder.from_payload(job.payload)
        product_id = job.product.id if job.product is not None else None
        if product_id is None:
            raise PermanentPlatformError(PRODUCT_CHANGED, "The product no longer exists.")
        result: dict[str, Any] | None = job.progress.get("copy")
        if result is None:
            result = await self._write(job, product_id, order)
            await job.save_progress({"copy": result})
        applied_version = job.progress.get("applied_version")
        if order.apply and applied_version is None:
            applied_version = await self._apply(job, product_id, result)
            await job.save_progress({"applied_version": applied_version})
        log.info("description_written", provider=result["provider"], applied=order.apply)
        return ListingOutcome(
            external_id=None,
            url=None,
            result={**result, "applied": order.apply, "product_version": applied_version},
        )

    async def _write(self, job: JobInput, product_id: int, order: DescriptionOrder) -> dict[str, Any]:
        async with self._tenant(job.tenant_id) as session:
            product = await get_live_product(session, product_id)
            if product is None:
                raise PermanentPlatformError(PRODUCT_CHANGED, "The product was deleted.")
            values = {field: getattr(product, field) for field in _NAMED_FIELDS}
            facts = facts_of(product, await attribute_names(session, values, order.language), order.language)
        records: list[GenerationRecord] = []
        try:
            written = await self.writer.write(CopyRequest(facts, order.platforms), records)
        except WritingFailed as error:
            if error.transient:
                raise TransientPlatformError(f"Writing the description failed: {error.message}.") from error
            raise PermanentPlatformError(
                AI_PROVIDER_FAILED, f"The AI provider refused: {error.message}."
            ) from error
        finally:
            if records:
                async with self._tenant(job.tenant_id) as session:
                    await record_generations(session, job.job_id, product_id, records)
        copy = written.copy
        for platform, title in copy.titles.items():
            check_listing_text(title, copy.description, platform)
        check_listing_text(copy.title, copy.description, None)
        return {
            "language": order.language,
            "provider": written.provider,
            "model": written.model,
            "title": copy.title,
            "description": copy.description,
            "platforms": {
                platform: {"title": title, "description": copy.description}
                for platform, title in copy.titles.items()
            },
        }

    async def _apply(self, job: JobInput, product_id: int, result: dict[str, Any]) -> int:
        """Write the copy to the product as an ordinary edit; return the product's version after it."""
        async with self._tenant(job.tenant_id) as session:
            product = await get_live_product(session, product_id, for_update=True)
            if product is None:
                raise PermanentPlatformError(
                    PRODUCT_CHANGED, "The product was deleted before its description was applied."
                )
            if product.status == ProductStatus.ARCHIVED:
                raise PermanentPlatformError(
                    PRODUCT_CHANGED, "The product was archived before its description was applied."
                )
            updates = await edit_product(
                session,
                job.tenant_id,
                product,
                {"title": result["title"], "description": result["description"]},
            )
            log.info("description_applied", version=product.version, update_jobs=len(updates))
            return product.version
