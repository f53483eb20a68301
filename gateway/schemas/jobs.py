"""Bodies and answers of publication commands, jobs and listings."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.request_input import IntId
from persistence.tenant_models import PlatformListing, PublicationHistory, QueueJob

MarketplaceName = Literal["vinted", "ebay", "etsy"]


class JobError(BaseModel):
    code: str
    message: str


class JobOut(BaseModel):
    id: uuid.UUID
    product_id: int | None
    platform: str
    action: str
    status: str
    attempts: int
    max_attempts: int
    error: JobError | None
    result: dict[str, Any] | None
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, job: QueueJob) -> JobOut:
        error = job.error if job.error and job.error.get("code") != "retrying" else None
        return cls(
            id=job.id,
            product_id=job.product_id,
            platform=job.platform,
            action=job.action,
            status=job.status,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            error=JobError(code=str(error["code"]), message=str(error.get("message", ""))) if error else None,
            result=job.result,
            next_attempt_at=job.next_attempt_at,
            created_at=job.created_at,
            updated_at=job.updated_at,
        )


class JobsAccepted(BaseModel):
    jobs: list[JobOut]


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


class PublishRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    platforms: list[MarketplaceName] = Field(min_length=1, max_length=3)
    vinted_account_id: IntId | None = None


class ListingOut(BaseModel):
    platform: str
    status: str
    external_id: str | None
    url: str | None
    published_at: datetime | None
    last_synced_at: datetime | None

    @classmethod
    def of(cls, listing: PlatformListing) -> ListingOut:
        return cls(
            platform=listing.platform,
            status=listing.status,
            external_id=listing.external_id,
            url=listing.url,
            published_at=listing.published_at,
            last_synced_at=listing.last_synced_at,
        )


class HistoryOut(BaseModel):
    id: int
    job_id: uuid.UUID
    platform: str
    action: str
    status: str
    attempt: int
    error_message: str | None
    started_at: datetime
    completed_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, row: PublicationHistory) -> HistoryOut:
        return cls.model_validate(row, from_attributes=True)


class PublicationsOut(BaseModel):
    listings: list[ListingOut]
    history: list[HistoryOut]
