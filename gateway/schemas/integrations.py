"""Bodies of /api/integrations: marketplace connections (secrets go in, never come out)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from gateway.request_input import BigId

Token = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4096)]
Identifier = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class EbayConnection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    access_token: Token
    refresh_token: Token
    marketplace_id: Annotated[str, StringConstraints(pattern=r"^EBAY_[A-Z_]{2,10}$")]
    fulfillment_policy_id: Identifier
    payment_policy_id: Identifier
    return_policy_id: Identifier
    merchant_location_key: Identifier
    #: The seller's eBay user name (optional): routes eBay's account-deletion notice to this tenant.
    username: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


class EtsyConnection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shop_id: BigId | Annotated[str, StringConstraints(pattern=r"^[0-9]{1,20}$")]
    access_token: Token
    refresh_token: Token
    shipping_profile_id: BigId | Annotated[str, StringConstraints(pattern=r"^[0-9]{1,20}$")]


class VintedAccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vinted_user_id: BigId | Annotated[str, StringConstraints(pattern=r"^[0-9]{1,20}$")]
    username: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class VintedAccountOut(BaseModel):
    id: int
    vinted_user_id: str
    username: str
    created_at: datetime


class VintedAccounts(BaseModel):
    items: list[VintedAccountOut]
