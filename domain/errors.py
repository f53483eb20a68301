"""Business-rule errors. The gateway maps each `code` to a problem document; workers to a job error.

DomainError
├── NotFound                  not_found
├── InvalidState              invalid_state
├── InvalidTransition         invalid_transition
├── OutOfStock                out_of_stock
├── QuotaExceeded             quota_exceeded
├── Conflict                  (a resource already exists)
│   ├── EmailTaken            email_taken
│   └── SkuTaken              sku_taken
├── UnknownAttribute          unknown_attribute
├── VersionConflict           version_conflict
├── InvalidCredentials        invalid_credentials
├── TenantLimitReached        tenant_limit_reached
└── InvalidValue              validation_error (a pure field rule, answered as 422)
"""

from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    """A command broke a business rule; `code` is the machine-readable name clients see."""

    code: ClassVar[str] = "domain_error"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class NotFound(DomainError):
    code = "not_found"


class InvalidState(DomainError):
    code = "invalid_state"


class InvalidTransition(DomainError):
    code = "invalid_transition"


class OutOfStock(DomainError):
    code = "out_of_stock"


class QuotaExceeded(DomainError):
    code = "quota_exceeded"


class Conflict(DomainError):
    code = "conflict"


class EmailTaken(Conflict):
    code = "email_taken"


class SkuTaken(Conflict):
    code = "sku_taken"


class UnknownAttribute(DomainError):
    code = "unknown_attribute"


class VersionConflict(DomainError):
    code = "version_conflict"


class InvalidCredentials(DomainError):
    code = "invalid_credentials"


class TenantLimitReached(DomainError):
    code = "tenant_limit_reached"


class InvalidValue(DomainError):
    """A field breaks a pure product rule; the gateway reports it as a 422 `validation_error`."""

    code = "validation_error"
