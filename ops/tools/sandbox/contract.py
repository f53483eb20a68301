"""What a request must look like to reach a fake marketplace: content type, headers, query and body schema.

Each platform module declares one `EndpointContract` per endpoint Stoflow calls, built from the facts of the
marketplace's published definition (see docs/marketplaces.md for each fact and its source). The sandbox checks
every request against its contract before the route runs: in strict mode (the default) a violation is refused
in the marketplace's own error shape; in lenient mode it is only recorded. Either way the request log carries
the violations, so a test can assert that nothing a client sent broke a contract.

Bodies are checked with pydantic models that forbid unknown fields: an unknown field is where a client's
misunderstanding of an API hides (a field the marketplace silently ignores is a change that never happens).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request

BodyKind = Literal["json", "form", "multipart"]

_MEDIA_TYPES: dict[BodyKind, str] = {
    "json": "application/json",
    "form": "application/x-www-form-urlencoded",
    "multipart": "multipart/form-data",
}


@dataclass(frozen=True)
class Violation:
    """One way a request breaks its contract: where (`body.title`, `header.Content-Language`) and why."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass(frozen=True)
class EndpointContract:
    """The shape one endpoint accepts."""

    #: The body's media type, or None for an endpoint that takes no body.
    body_kind: BodyKind | None = None
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    #: Header name -> check returning an error message, or None when the value is acceptable.
    headers: Mapping[str, Callable[[str | None], str | None]] = field(default_factory=dict)


@dataclass
class ParsedRequest:
    """A request's parameters read once: the body as a dict (form lists folded), and uploaded files."""

    body: dict[str, Any]
    files: dict[str, bytes]
    violations: list[Violation]


def media_type(request: Request) -> str:
    """The request's media type without parameters (`multipart/form-data; boundary=...` -> the first part)."""
    return (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()


async def read_form(request: Request) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Read a urlencoded or multipart body: repeated keys and `name[]` keys become lists; files are read."""
    params: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    async with request.form() as form:
        for key in form:
            values = form.getlist(key)
            texts: list[str] = []
            for value in values:
                if isinstance(value, UploadFile):
                    files[key] = await value.read()
                else:
                    texts.append(value)
            if not texts:
                continue
            name = key.removesuffix("[]")
            params[name] = texts if key.endswith("[]") or len(texts) > 1 else texts[0]
    return params, files


def _pydantic_violations(prefix: str, error: ValidationError) -> list[Violation]:
    found: list[Violation] = []
    for entry in error.errors():
        where = ".".join(str(part) for part in entry["loc"])
        message = "unknown field" if entry["type"] == "extra_forbidden" else entry["msg"]
        found.append(Violation(f"{prefix}.{where}" if where else prefix, message))
    return found


def check_model(
    prefix: str, model: type[BaseModel], data: Mapping[str, Any], context: Mapping[str, Any] | None = None
) -> list[Violation]:
    """Validate `data` against `model`, whose validators may read `context`; the violations, if any."""
    try:
        model.model_validate(dict(data), context=dict(context or {}))
    except ValidationError as error:
        return _pydantic_violations(prefix, error)
    return []


def validation_context(request: Request) -> dict[str, Any]:
    """What a schema's validators may ask of the sandbox's configuration."""
    return {"allow_http_images": request.app.state.sandbox.allow_http_images}


async def parse_and_check(request: Request, contract: EndpointContract) -> ParsedRequest:
    """Read the request's parameters and list every way it breaks `contract`."""
    violations: list[Violation] = []
    for name, check in contract.headers.items():
        problem = check(request.headers.get(name))
        if problem is not None:
            violations.append(Violation(f"header.{name}", problem))
    if contract.query is not None:
        query: dict[str, Any] = {}
        for key in request.query_params:
            values = request.query_params.getlist(key)
            query[key] = values if len(values) > 1 else values[0]
        violations += check_model("query", contract.query, query)

    body: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    if contract.body_kind is None:
        return ParsedRequest(body, files, violations)
    expected = _MEDIA_TYPES[contract.body_kind]
    actual = media_type(request)
    if actual != expected:
        violations.append(Violation("header.Content-Type", f"must be {expected}, not {actual or 'missing'}"))
    # Read what was sent however it was sent, so lenient mode can still serve it.
    if actual == "application/json" or (not actual and contract.body_kind == "json"):
        raw = await request.body()
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError:
            violations.append(Violation("body", "is not valid JSON"))
            decoded = {}
        if isinstance(decoded, dict):
            body = decoded
        else:
            violations.append(Violation("body", "must be a JSON object"))
    elif actual in ("application/x-www-form-urlencoded", "multipart/form-data"):
        body, files = await read_form(request)
    if contract.body is not None:
        violations += check_model("body", contract.body, body, validation_context(request))
    return ParsedRequest(body, files, violations)


async def checked_request(
    request: Request,
    contracts: Mapping[tuple[str, str], EndpointContract],
    refuse: Callable[[list[Violation]], Exception],
) -> ParsedRequest:
    """Check a request against its route's contract; note violations on its log record; refuse when strict.

    An endpoint without a contract is one Stoflow does not call: it is served as it comes.
    """
    route = request.scope.get("route")
    template = getattr(route, "path", request.url.path)
    contract = contracts.get((request.method, template), EndpointContract())
    parsed = await parse_and_check(request, contract)
    if parsed.violations:
        record = getattr(request.state, "sandbox_record", None)
        if record is not None:
            record.violations.extend(str(v) for v in parsed.violations)
        if request.app.state.sandbox.strict:
            raise refuse(parsed.violations)
    return parsed
