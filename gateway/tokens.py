"""JWT access and refresh tokens: algorithm pinned, `exp` required, `type` checked."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt

TokenType = Literal["access", "refresh"]
#: The role of an operator's token: it names no tenant.
OPERATOR_ROLE = "operator"
#: Verified access tokens a gateway process remembers (one per active client, roughly).
_VERIFIED_KEPT = 10_000


class InvalidToken(Exception):
    """The token is malformed, forged, expired or of the wrong type."""


@dataclass(frozen=True)
class AccessClaims:
    user_id: int
    #: None exactly when `role` is `operator`
    tenant_id: int | None
    role: str
    session_id: uuid.UUID
    jti: str


@dataclass(frozen=True)
class RefreshClaims:
    user_id: int
    session_id: uuid.UUID
    jti: uuid.UUID


@dataclass(frozen=True)
class IssuedRefresh:
    token: str
    jti: uuid.UUID
    expires_at: datetime


class TokenService:
    """Issue and verify tokens with one secret and one algorithm."""

    def __init__(self, secret: str, algorithm: str, access_ttl: timedelta, refresh_ttl: timedelta) -> None:
        self._secret = secret
        self._algorithm = algorithm
        #: access tokens already verified: their claims and `exp` (oldest first, at most `_VERIFIED_KEPT`)
        self._verified: dict[str, tuple[AccessClaims, float]] = {}
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl

    def issue_access(self, *, user_id: int, tenant_id: int | None, role: str, session_id: uuid.UUID) -> str:
        now = datetime.now(UTC)
        claims: dict[str, Any] = {
            "sub": str(user_id),
            "role": role,
            "type": "access",
            "sid": str(session_id),
            "iat": now,
            "exp": now + self.access_ttl,
            "jti": uuid.uuid4().hex,
        }
        if tenant_id is not None:
            claims["tenant_id"] = tenant_id
        return jwt.encode(claims, self._secret, algorithm=self._algorithm)

    def issue_refresh(self, *, user_id: int, session_id: uuid.UUID) -> IssuedRefresh:
        now = datetime.now(UTC)
        jti = uuid.uuid4()
        expires_at = now + self.refresh_ttl
        claims = {
            "sub": str(user_id),
            "type": "refresh",
            "sid": str(session_id),
            "iat": now,
            "exp": expires_at,
            "jti": str(jti),
        }
        return IssuedRefresh(jwt.encode(claims, self._secret, algorithm=self._algorithm), jti, expires_at)

    def _decode(self, token: str, expected: TokenType) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[self._algorithm],
                options={"require": ["exp", "iat", "sub", "type", "jti", "sid"]},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error)) from error
        if claims.get("type") != expected:
            raise InvalidToken(f"expected a {expected} token")
        return claims

    def decode_access(self, token: str) -> AccessClaims:
        """The claims of a valid access token; `InvalidToken` otherwise.

        A token verified once is remembered until its `exp` (a client sends the same one with every
        request): the signature is checked once, expiry every time. Revocation is the caller's check.
        """
        known = self._verified.get(token)
        if known is not None:
            claims_of_token, expires_at = known
            if time.time() < expires_at:
                return claims_of_token
            del self._verified[token]
        return self._decode_access(token)

    def _decode_access(self, token: str) -> AccessClaims:
        claims = self._decode(token, "access")
        role = str(claims.get("role", ""))
        tenant_id = claims.get("tenant_id")
        if role == OPERATOR_ROLE:
            if tenant_id is not None:
                raise InvalidToken("an operator token names no tenant")
        elif type(tenant_id) is not int or tenant_id <= 0:
            raise InvalidToken("tenant_id must be a positive integer")
        access = AccessClaims(
            user_id=_user_id(claims),
            tenant_id=tenant_id,
            role=role,
            session_id=_uuid(claims["sid"]),
            jti=str(claims["jti"]),
        )
        expires_at = claims["exp"]
        if isinstance(expires_at, int | float):
            self._verified[token] = (access, float(expires_at))
            if len(self._verified) > _VERIFIED_KEPT:
                self._verified.pop(next(iter(self._verified)))
        return access

    def decode_refresh(self, token: str) -> RefreshClaims:
        claims = self._decode(token, "refresh")
        return RefreshClaims(
            user_id=_user_id(claims), session_id=_uuid(claims["sid"]), jti=_uuid(claims["jti"])
        )


def _user_id(claims: dict[str, Any]) -> int:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.isdigit():
        raise InvalidToken("sub must be a user id")
    return int(sub)


def _uuid(value: object) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as error:
        raise InvalidToken("malformed id claim") from error
