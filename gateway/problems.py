"""RFC 9457 problem documents: every error the API answers, including FastAPI's own and crashes.

ProblemError (raised by the gateway itself, carries status + code)
DomainError  (domain/errors.py)   -> status from DOMAIN_STATUS
HTTPException (Starlette/FastAPI) -> code from the status
RequestValidationError            -> 422 validation_error
database unreachable              -> 503 service_unavailable
anything else                     -> 500 internal_error (trace logged with the request id, never sent)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain.errors import DomainError

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"

DOMAIN_STATUS: dict[str, int] = {
    "not_found": 404,
    "invalid_state": 409,
    "invalid_transition": 409,
    "out_of_stock": 409,
    "quota_exceeded": 403,
    "email_taken": 409,
    "sku_taken": 409,
    "conflict": 409,
    "unknown_attribute": 422,
    "version_conflict": 412,
    "invalid_credentials": 401,
    "tenant_limit_reached": 503,
    "no_ai_credits": 402,
}

_STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    412: "version_conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "service_unavailable",
}


class ProblemDocument(BaseModel):
    """RFC 9457 problem document: every error answer of the API has this shape."""

    type: str
    title: str
    status: int
    detail: str
    code: str = Field(
        description="Machine-readable error code (the contract's codes: docs/http-contract.md)."
    )
    errors: list[dict[str, Any]] | None = Field(
        default=None, description='For validation errors: `[{"loc": [...], "msg": "..."}]`.'
    )


#: Documented on every route: the answers any request may get.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ProblemDocument, "description": "not_authenticated or invalid_token"},
    422: {"model": ProblemDocument, "description": "validation_error"},
    503: {"model": ProblemDocument, "description": "service_unavailable: PostgreSQL or Redis is down"},
}


class ProblemError(Exception):
    """An error the gateway answers as a problem document."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors
        self.headers = headers


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    errors: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://stoflow.app/problems/{code.replace('_', '-')}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors is not None:
        body["errors"] = jsonable_encoder(errors)
    return JSONResponse(body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON)


#: Errors listed in one 422 answer: a hostile body must not buy a megabytes-long answer.
MAX_REPORTED_ERRORS = 20


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Keep only `loc`, `msg` and `type` of pydantic's errors: input values may hold secrets."""
    return [
        {"loc": list(error.get("loc", ())), "msg": str(error.get("msg", "")), "type": error.get("type")}
        for error in exc.errors()[:MAX_REPORTED_ERRORS]
    ]


#: SQLSTATE classes that mean "the server cannot serve now", not "this request is wrong": connection
#: exceptions (08), insufficient resources such as too many connections (53), operator intervention (57).
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57")


def _is_database_unreachable(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if isinstance(sqlstate, str) and sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES:
            return True
    return isinstance(exc, ConnectionError | TimeoutError)


async def _problem_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(exc.status, exc.code, exc.detail, errors=exc.errors, headers=exc.headers)


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    errors = [{"loc": ["body", exc.field], "msg": exc.detail}] if exc.field else None
    return problem_response(DOMAIN_STATUS.get(exc.code, 409), exc.code, exc.detail, errors=errors)


async def _http_exception(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "error")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = "No such resource."
    return problem_response(exc.status_code, code, detail, headers=exc.headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return problem_response(
        422, "validation_error", "The request is not valid.", errors=validation_errors(exc)
    )


async def _dependency_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, RedisError) or _is_database_unreachable(exc):
        log.warning("dependency_unavailable", error_type=type(exc).__name__)
        return problem_response(
            503,
            "service_unavailable",
            "A backing service is unavailable; try again shortly.",
            headers={"Retry-After": "5"},
        )
    return await _unhandled(request, exc)


async def _unhandled(_request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled_error", exc_info=exc)
    return problem_response(500, "internal_error", "Something went wrong on our side.")


def document_problems(app: FastAPI) -> None:
    """Make /openapi.json say what the API answers: every error is `application/problem+json`."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        problem_ref = {"$ref": "#/components/schemas/ProblemDocument"}
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                for status, response in operation.get("responses", {}).items():
                    if not status.isdigit() or int(status) < 400:
                        continue
                    response["content"] = {PROBLEM_JSON: {"schema": problem_ref}}
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault("ProblemDocument", ProblemDocument.model_json_schema())
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _problem_error)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # Handled inside the app, not by the outermost server-error middleware, so they are not re-raised.
    for error_type in (DBAPIError, RedisError, ConnectionError, TimeoutError):
        app.add_exception_handler(error_type, _dependency_error)
    app.add_exception_handler(Exception, _unhandled)
    document_problems(app)
