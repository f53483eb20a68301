"""ai_generation_log (tenant schema): one row per call to a description provider."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.tenant_models import AiGenerationLog


@dataclass(frozen=True)
class GenerationRecord:
    """What one provider call used and gave: the basis of cost reports and provider comparisons."""

    provider: str
    model: str | None
    language: str
    latency_ms: int
    #: succeeded, invalid_output, policy_violation or provider_error
    outcome: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = Decimal(0)
    error: str | None = None


async def record_generations(
    session: AsyncSession, job_id: uuid.UUID, product_id: int | None, records: list[GenerationRecord]
) -> None:
    """Add the log rows of one job run's provider calls."""
    session.add_all(
        AiGenerationLog(job_id=job_id, product_id=product_id, **asdict(record)) for record in records
    )
    await session.flush()


async def generations_of(session: AsyncSession, job_id: uuid.UUID) -> list[AiGenerationLog]:
    """The provider calls of one job, oldest first."""
    rows = await session.scalars(
        select(AiGenerationLog).where(AiGenerationLog.job_id == job_id).order_by(AiGenerationLog.id)
    )
    return list(rows)
