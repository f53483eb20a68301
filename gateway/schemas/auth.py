"""Bodies of /api/auth."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints


def _password_bytes(value: str) -> str:
    size = len(value.encode("utf-8"))
    if size < 8 or size > 72:
        # bcrypt only reads 72 bytes: a longer password would silently match its own prefix.
        raise ValueError("password must be 8 to 72 bytes in UTF-8")
    return value


Password = Annotated[str, AfterValidator(_password_bytes)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterRequest(StrictBody):
    email: EmailStr
    password: Password
    full_name: ShortText | None = None
    business_name: ShortText | None = None
    account_type: Literal["individual", "professional"] = "individual"
    language: Literal["fr", "en"] = "fr"
    country: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")] | None = None


class LoginRequest(StrictBody):
    email: Annotated[str, StringConstraints(min_length=1, max_length=320)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class RefreshRequest(StrictBody):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class UserOut(BaseModel):
    id: int
    #: null for an operator
    tenant_id: int | None
    email: str
    full_name: str | None
    role: Literal["admin", "user", "operator"]
    language: str
    created_at: datetime


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int = Field(description="Seconds until the access token expires.")


class RegisterResponse(TokenPair):
    user: UserOut
