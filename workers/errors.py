"""Errors a platform step raises; the job runner turns each into a retry, a wait or a failure.

PlatformError
├── TransientPlatformError   timeouts, 429, 5xx, lost responses: retried with backoff
├── PermanentPlatformError   4xx and refusals: the job fails at once with `code`
│   └── AuthExpired          the marketplace tokens no longer work (auth_expired)
├── RateLimited              no rate-limit slots now: the job waits until `available_at`
└── LeaseLost                this run no longer holds the job: it stops and writes nothing
"""

from __future__ import annotations

from datetime import datetime


class PlatformError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TransientPlatformError(PlatformError):
    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentPlatformError(PlatformError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class AuthExpired(PermanentPlatformError):
    def __init__(self, message: str) -> None:
        super().__init__("auth_expired", message)


class RateLimited(PlatformError):
    def __init__(self, message: str, *, available_at: datetime) -> None:
        super().__init__(message)
        self.available_at = available_at


class LeaseLost(PlatformError):
    def __init__(self) -> None:
        super().__init__("This run lost its lease on the job; a later run carries on.")
