"""`Idempotency-Key`: the first 2xx answer to a command is stored with it and replayed for 24 h.

The record is written in the command's own transaction, so a command and its record commit together. A
transaction-scoped advisory lock on the key makes a concurrent duplicate answer 409 at once.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import Request, Response
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from gateway.problems import ProblemError
from persistence.core_models import IdempotencyRecord

HEADER = "Idempotency-Key"
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RETENTION = timedelta(hours=24)
_KEY_PATTERN = re.compile(r"^[\x20-\x7e]{1,255}$")
_REPLAYED_HEADERS = ("content-type", "etag", "location")


@dataclass(frozen=True)
class IdempotencyScope:
    tenant_id: int
    method: str
    path: str
    key: str
    fingerprint: str


def parse_key(raw: str) -> str:
    if not _KEY_PATTERN.fullmatch(raw):
        raise ProblemError(
            422,
            "validation_error",
            "Idempotency-Key must be 1 to 255 printable ASCII characters.",
            errors=[{"loc": ["header", HEADER], "msg": "1..255 printable ASCII characters"}],
        )
    return raw


async def request_fingerprint(request: Request) -> str:
    """Hash what makes two requests 'the same': JSON by value, multipart by fields and file bytes."""
    digest = hashlib.sha256()
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        for name, value in sorted(form.multi_items(), key=lambda item: item[0]):
            digest.update(name.encode() + b"\0")
            if isinstance(value, UploadFile):
                digest.update(hashlib.sha256(await value.read()).digest())
                await value.seek(0)
            else:
                digest.update(value.encode())
            digest.update(b"\0")
        return digest.hexdigest()
    body = await request.body()
    try:
        digest.update(json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode())
    except ValueError:
        digest.update(body)
    return digest.hexdigest()


async def lock_key(session: AsyncSession, scope: IdempotencyScope) -> None:
    """Hold the key for this transaction, or answer 409 if another request holds it now."""
    locked = await session.scalar(
        text("SELECT pg_try_advisory_xact_lock(:tenant, hashtext(:name))"),
        {"tenant": scope.tenant_id, "name": f"{scope.method} {scope.path} {scope.key}"},
    )
    if not locked:
        raise ProblemError(
            409,
            "idempotency_in_progress",
            "A request with this Idempotency-Key is still being processed.",
            headers={"Retry-After": "1"},
        )


async def find_replay(session: AsyncSession, scope: IdempotencyScope) -> Response | None:
    """The stored answer for this key, or None; a different body under the same key is refused."""
    record = await session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.tenant_id == scope.tenant_id,
            IdempotencyRecord.method == scope.method,
            IdempotencyRecord.path == scope.path,
            IdempotencyRecord.key == scope.key,
            IdempotencyRecord.created_at > datetime.now(UTC) - RETENTION,
        )
    )
    if record is None:
        return None
    if record.request_hash != scope.fingerprint:
        raise ProblemError(
            422,
            "idempotency_key_reused",
            "This Idempotency-Key was already used with a different request body.",
        )
    headers = {name: str(value) for name, value in record.headers.items()}
    headers["Idempotent-Replayed"] = "true"
    return Response(content=record.body, status_code=record.status_code, headers=headers)


async def remember(session: AsyncSession, scope: IdempotencyScope, response: Response) -> None:
    """Store a 2xx answer in the command's transaction (an expired record with the key is replaced)."""
    headers = {name: response.headers[name] for name in _REPLAYED_HEADERS if name in response.headers}
    values = {
        "tenant_id": scope.tenant_id,
        "method": scope.method,
        "path": scope.path,
        "key": scope.key,
        "request_hash": scope.fingerprint,
        "status_code": response.status_code,
        "headers": headers,
        "body": bytes(response.body),
        "created_at": datetime.now(UTC),
    }
    statement = insert(IdempotencyRecord).values(**values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant_id", "method", "path", "key"],
            set_={name: statement.excluded[name] for name in values},
        )
    )
