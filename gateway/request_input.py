"""The one path every `/api` request's input takes before a handler sees it.

- JSON bodies are decoded here, strictly: invalid UTF-8, malformed or truncated JSON, nesting deeper than
  `MAX_JSON_DEPTH`, documents of more than `MAX_JSON_VALUES` values and objects of more than
  `MAX_JSON_OBJECT_KEYS` keys are 422 `validation_error` (the framework's own decoder answered some of them
  400, and a 60,000-key body cost seconds of event-loop CPU to list every unknown key).
- No string may hold a NUL (PostgreSQL cannot store it) or a lone surrogate (it cannot be encoded as
  UTF-8): in a JSON body, a query parameter or a path parameter, either is 422 with the value's location.
- Ids are bounded by their column's range (`IntId`, `BigId`): past it, a query or body id is 422 and a
  path id is 404, never a database overflow.
"""

from __future__ import annotations

import email.message
import json
import re
from collections.abc import Callable
from typing import Annotated, Any, Final, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import Field

_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])

MAX_JSON_DEPTH: Final = 32
MAX_JSON_VALUES: Final = 20_000
MAX_JSON_OBJECT_KEYS: Final = 1_000

#: PostgreSQL `integer` and `bigint` upper bounds.
MAX_INT: Final = 2**31 - 1
MAX_BIGINT: Final = 2**63 - 1

#: An id of a PostgreSQL `integer` column (users, tenants, products, images, Vinted accounts).
IntId = Annotated[int, Field(ge=1, le=MAX_INT)]
#: An id of a PostgreSQL `bigint` column.
BigId = Annotated[int, Field(ge=1, le=MAX_BIGINT)]

_PATH_ID = re.compile(r"[1-9][0-9]{0,18}")
# A NUL, or a UTF-16 surrogate that is not part of a pair (Python strings hold those as lone code points).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def is_json_content_type(value: str) -> bool:
    """The same reading of Content-Type as FastAPI's body parser: `application/json` or `*/*+json`."""
    message = email.message.Message()
    message["content-type"] = value
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def parse_path_id(raw: str, maximum: int = MAX_INT) -> int | None:
    """The integer a path segment names, or None when it cannot be one of our ids."""
    if not _PATH_ID.fullmatch(raw):
        return None
    value = int(raw)
    return value if value <= maximum else None


def _invalid(loc: list[str | int], msg: str, kind: str = "value_error") -> RequestValidationError:
    return RequestValidationError([{"type": kind, "loc": tuple(loc), "msg": msg, "input": None}])


def unstorable_text_error(value: str) -> str | None:
    """Why a string cannot be accepted, or None when it can."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "Text must not contain a NUL character."
    return "Text must not contain a lone UTF-16 surrogate."


#: A location pattern inside a body: keys, and "*" for any list index or key.
OpaquePath = tuple[str, ...]


def opaque_json(*paths: OpaquePath) -> Callable[[_Endpoint], _Endpoint]:
    """Mark body locations whose strings are a third party's data, kept as sent (the handler makes them
    storable): NUL and lone surrogates are not refused there. Size and depth limits still apply."""

    def mark(endpoint: _Endpoint) -> _Endpoint:
        endpoint.opaque_json_paths = paths  # type: ignore[attr-defined]
        return endpoint

    return mark


def opaque_paths_of(endpoint: Callable[..., Any]) -> tuple[OpaquePath, ...]:
    paths: tuple[OpaquePath, ...] = getattr(endpoint, "opaque_json_paths", ())
    return paths


def _is_opaque(loc: list[str | int], opaque: tuple[OpaquePath, ...]) -> bool:
    inner = loc[1:]  # without the leading "body"
    return any(
        len(inner) >= len(pattern)
        and all(part == "*" or part == str(step) for part, step in zip(pattern, inner, strict=False))
        for pattern in opaque
    )


def _check_tree(document: Any, opaque: tuple[OpaquePath, ...] = ()) -> None:
    """Walk the decoded document without recursion: depth, size and every string (keys too)."""
    stack: list[tuple[Any, list[str | int], int]] = [(document, ["body"], 0)]
    seen = 0
    while stack:
        value, loc, depth = stack.pop()
        seen += 1
        if seen > MAX_JSON_VALUES:
            raise _invalid(["body"], f"The JSON document holds more than {MAX_JSON_VALUES} values.")
        if depth > MAX_JSON_DEPTH:
            raise _invalid(loc, f"The JSON document is nested more than {MAX_JSON_DEPTH} levels deep.")
        if isinstance(value, str):
            problem = unstorable_text_error(value)
            if problem and not _is_opaque(loc, opaque):
                raise _invalid(loc, problem)
        elif isinstance(value, dict):
            if len(value) > MAX_JSON_OBJECT_KEYS:
                raise _invalid(loc, f"A JSON object holds more than {MAX_JSON_OBJECT_KEYS} keys.")
            for key, item in value.items():
                problem = unstorable_text_error(key)
                if problem and not _is_opaque([*loc, key], opaque):
                    raise _invalid(loc, f"A key is not valid: {problem}")
                stack.append((item, [*loc, key], depth + 1))
        elif isinstance(value, list):
            stack.extend((item, [*loc, index], depth + 1) for index, item in enumerate(value))


def _nesting_depth_exceeds(text: str, limit: int) -> bool:
    """A cheap bracket count before decoding: the stdlib decoder recurses once per level."""
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def decode_json_body(body: bytes, opaque: tuple[OpaquePath, ...] = ()) -> Any:
    """Decode a request body as strict JSON, or raise a 422 `RequestValidationError`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _invalid(["body", error.start], "The body is not valid UTF-8.", "json_invalid") from None
    if _nesting_depth_exceeds(text, MAX_JSON_DEPTH):
        raise _invalid(["body"], f"The JSON document is nested more than {MAX_JSON_DEPTH} levels deep.")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise _invalid(
            ["body", error.pos], f"The body is not valid JSON: {error.msg}.", "json_invalid"
        ) from None
    except (RecursionError, ValueError):
        raise _invalid(["body"], "The body is not valid JSON.", "json_invalid") from None
    _check_tree(document, opaque)
    return document


class StrictJsonRequest(Request):
    """A request whose `json()` is `decode_json_body`: what FastAPI validates has passed our checks."""

    opaque: tuple[OpaquePath, ...] = ()

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = decode_json_body(await self.body(), self.opaque)
        return self._json

    def decoded_json(self) -> Any:
        """The JSON body `check_request_input` decoded, or None when it decoded none."""
        return getattr(self, "_json", None)


async def check_request_input(request: StrictJsonRequest) -> None:
    """Refuse unstorable text in the query and path, and decode a JSON body once, before any handler."""
    for name, value in request.query_params.multi_items():
        problem = unstorable_text_error(name) or unstorable_text_error(value)
        if problem:
            raise _invalid(["query", name], problem)
    for name, value in request.path_params.items():
        if isinstance(value, str):
            problem = unstorable_text_error(value)
            if problem:
                raise _invalid(["path", name], problem)
    content_type = request.headers.get("content-type")
    if content_type is not None and is_json_content_type(content_type) and await request.body():
        await request.json()
