"""Schemathesis hooks (SCHEMATHESIS_HOOKS=tests.fuzz.hooks): every error is a problem document with a code."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.check
def problem_document_with_code(ctx: Any, response: Any, case: Any) -> bool | None:
    """4xx/5xx answers are RFC 9457 problem documents carrying a machine `code` (http-contract.md)."""
    if response.status_code < 400 or case.method.upper() == "HEAD":
        return None
    content_type = response.headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    if not content_type.startswith("application/problem+json"):
        raise AssertionError(f"{response.status_code} answered as {content_type!r}, not a problem document")
    body = response.json()
    if not isinstance(body, dict) or not isinstance(body.get("code"), str) or not body["code"]:
        raise AssertionError(f"{response.status_code} problem document without a `code`: {body!r}")
    if body.get("status") != response.status_code:
        raise AssertionError("the problem document's `status` differs from the HTTP status")
    return None
