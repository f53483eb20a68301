"""Bodies of /api/plugin: the browser plugin's queue."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class TaskRequest(BaseModel):
    method: str
    path: str
    body: Any = None


class TaskOut(BaseModel):
    id: uuid.UUID
    job_id: uuid.UUID
    vinted_account_id: int
    vinted_user_id: str | None = None
    operation: Literal["create_item", "update_item", "delete_item", "list_items", "list_sold_orders"] = Field(
        description=(
            "`list_sold_orders` is a sale check: it reads the member's sold orders "
            "(`GET /api/v2/my_orders?type=sold&page=1&per_page=50`) or, in a second task when new orders "
            "were found, each new order's transaction (`GET /api/v2/transactions/{id}`), which names the "
            "items sold. Like every task, it is run once and its answers reported as received."
        )
    )
    requests: list[TaskRequest] = Field(
        description=(
            'Run in order. A body value `{"$ref": "responses[i].path.to.field"}` stands for that '
            "field of the i-th response's body; a photo upload carries "
            '`$upload: {"field", "url"}`: send the image at `url` as that multipart field, '
            "with the other body fields as form fields."
        )
    )
    lease_id: uuid.UUID
    lease_expires_at: datetime


class TaskBatch(BaseModel):
    tasks: list[TaskOut]


class LeaseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lease_id: uuid.UUID


class LeaseOut(BaseModel):
    lease_id: uuid.UUID
    lease_expires_at: datetime


class RequestOutcome(BaseModel):
    http_status: Annotated[int, Field(ge=0, le=599)]
    body: Any = None


class ReportedError(BaseModel):
    code: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    message: Annotated[str, StringConstraints(max_length=2000)] = ""


class ResultBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lease_id: uuid.UUID
    status: Literal["success", "error"]
    responses: list[RequestOutcome] = Field(max_length=50)
    error: ReportedError | None = None


class ResultOut(BaseModel):
    id: uuid.UUID
    status: Literal["success", "error"]
    job_id: uuid.UUID


class PluginEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["sold"]
    platform: Literal["vinted"]
    external_id: Annotated[str, StringConstraints(min_length=1, max_length=100)] | int
