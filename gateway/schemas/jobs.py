"""Bodies and answers of publication commands, jobs and listings."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
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
    action: str = Field(
        description=(
            "`publish`, `update`, `delist`, `generate_description`, `import`, or `check_sales`: Stoflow's "
            "Vinted sale check (no product), which reads the member's sold orders through the plugin "
            "(`list_sold_orders` tasks) within `VINTED_SALE_CHECK_SHARE` of its request budget; its "
            '`result` is `{"sales": n, "seen": [transaction ids]}`'
        )
    )
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
        return cls.of_row({name: getattr(job, name) for name in _JOB_COLUMNS})

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> JobOut:
        """From a row read without the ORM (jsonb columns may come as text)."""
        error = _json_column(row["error"])
        if error and error.get("code") == "retrying":
            error = None
        return cls(
            id=row["id"],
            product_id=row["product_id"],
            platform=row["platform"],
            action=row["action"],
            status=row["status"],
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            error=JobError(code=str(error["code"]), message=str(error.get("message", ""))) if error else None,
            result=_json_column(row["result"]),
            next_attempt_at=row["next_attempt_at"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


_JOB_COLUMNS = (
    "id",
    "product_id",
    "platform",
    "action",
    "status",
    "attempts",
    "max_attempts",
    "error",
    "result",
    "next_attempt_at",
    "created_at",
    "updated_at",
)


def _json_column(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    return dict(json.loads(value) if isinstance(value, str) else value)


class JobsAccepted(BaseModel):
    jobs: list[JobOut]


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


class PublishRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    platforms: list[MarketplaceName] = Field(min_length=1, max_length=3)
    vinted_account_id: IntId | None = None


class ImportRequest(BaseModel):
    """Body of `POST /api/imports`: the marketplace whose existing listings become linked products."""

    model_config = ConfigDict(extra="forbid")

    platform: Literal["vinted", "ebay"]
    #: Vinted: the account whose wardrobe is read (required when the tenant has several)
    vinted_account_id: int | None = Field(default=None, ge=1)


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
