"""Bodies and answers of AI descriptions and credits."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.schemas.jobs import MarketplaceName


class DescriptionRequest(BaseModel):
    """Ask for a title and description written from the product's attributes."""

    model_config = ConfigDict(extra="forbid")

    language: Literal["fr", "en"]
    platforms: list[MarketplaceName] | None = Field(
        default=None,
        min_length=1,
        max_length=3,
        description="Marketplaces to write for (a title each, within its limit); default: all three.",
    )
    apply: bool = Field(
        default=True,
        description="Write the result to the product (a new version; live listings get an update job).",
    )

    @field_validator("platforms")
    @classmethod
    def _distinct(cls, platforms: list[str] | None) -> list[str] | None:
        return list(dict.fromkeys(platforms)) if platforms is not None else None


class CreditsOut(BaseModel):
    monthly: int = Field(description="The tier's allowance per billing period.")
    remaining: int
    resets_at: datetime = Field(description="When the allowance is renewed (the next billing date).")
