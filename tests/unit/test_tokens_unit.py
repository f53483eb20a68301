"""TokenService: round trips, the type check, expiry and pinned algorithm, without any server."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import jwt
import pytest

from gateway.tokens import InvalidToken, TokenService

SECRET = "unit-test-secret-" + "s" * 47


def _service(access_ttl: timedelta = timedelta(hours=24)) -> TokenService:
    return TokenService(SECRET, "HS256", access_ttl=access_ttl, refresh_ttl=timedelta(days=7))


def test_access_token_round_trip() -> None:
    service = _service()
    session_id = uuid.uuid4()
    token = service.issue_access(user_id=12, tenant_id=34, role="admin", session_id=session_id)
    claims = service.decode_access(token)
    assert (claims.user_id, claims.tenant_id, claims.role, claims.session_id) == (12, 34, "admin", session_id)
    raw = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert raw["sub"] == "12"
    assert raw["tenant_id"] == 34
    assert raw["type"] == "access"
    assert raw["exp"] - raw["iat"] == 24 * 3600
    assert raw["jti"]


def test_refresh_token_round_trip() -> None:
    service = _service()
    session_id = uuid.uuid4()
    issued = service.issue_refresh(user_id=5, session_id=session_id)
    claims = service.decode_refresh(issued.token)
    assert (claims.user_id, claims.session_id, claims.jti) == (5, session_id, issued.jti)
    raw = jwt.decode(issued.token, SECRET, algorithms=["HS256"])
    assert raw["type"] == "refresh"
    assert raw["exp"] == int(issued.expires_at.timestamp())


def test_every_token_is_unique() -> None:
    service = _service()
    session_id = uuid.uuid4()
    first = service.issue_access(user_id=1, tenant_id=1, role="user", session_id=session_id)
    second = service.issue_access(user_id=1, tenant_id=1, role="user", session_id=session_id)
    assert first != second
    assert service.decode_access(first).jti != service.decode_access(second).jti


def test_types_are_not_interchangeable() -> None:
    service = _service()
    session_id = uuid.uuid4()
    access = service.issue_access(user_id=1, tenant_id=2, role="admin", session_id=session_id)
    refresh = service.issue_refresh(user_id=1, session_id=session_id).token
    with pytest.raises(InvalidToken):
        service.decode_refresh(access)
    with pytest.raises(InvalidToken):
        service.decode_access(refresh)


def test_an_expired_access_token_is_invalid() -> None:
    service = _service(access_ttl=timedelta(seconds=-1))
    token = service.issue_access(user_id=1, tenant_id=2, role="admin", session_id=uuid.uuid4())
    with pytest.raises(InvalidToken):
        service.decode_access(token)


def test_another_secret_cannot_verify() -> None:
    token = _service().issue_access(user_id=1, tenant_id=2, role="admin", session_id=uuid.uuid4())
    other = TokenService("other-" + "o" * 58, "HS256", timedelta(hours=1), timedelta(days=1))
    with pytest.raises(InvalidToken):
        other.decode_access(token)


def test_the_algorithm_is_pinned() -> None:
    service = _service()
    claims = jwt.decode(
        service.issue_access(user_id=1, tenant_id=2, role="admin", session_id=uuid.uuid4()),
        SECRET,
        algorithms=["HS256"],
    )
    for algorithm, key in (("HS384", SECRET), ("none", None)):
        with pytest.raises(InvalidToken):
            service.decode_access(jwt.encode(claims, key, algorithm=algorithm))


@pytest.mark.parametrize("missing", ["exp", "sub", "type", "jti", "sid", "iat"])
def test_required_claims(missing: str) -> None:
    service = _service()
    claims = jwt.decode(
        service.issue_access(user_id=1, tenant_id=2, role="admin", session_id=uuid.uuid4()),
        SECRET,
        algorithms=["HS256"],
    )
    del claims[missing]
    with pytest.raises(InvalidToken):
        service.decode_access(jwt.encode(claims, SECRET, algorithm="HS256"))


@pytest.mark.parametrize("tenant_id", ["2", 0, -2, 2.0, True, None])
def test_tenant_id_must_be_a_positive_integer(tenant_id: object) -> None:
    service = _service()
    claims = jwt.decode(
        service.issue_access(user_id=1, tenant_id=2, role="admin", session_id=uuid.uuid4()),
        SECRET,
        algorithms=["HS256"],
    )
    claims["tenant_id"] = tenant_id
    with pytest.raises(InvalidToken):
        service.decode_access(jwt.encode(claims, SECRET, algorithm="HS256"))


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30."])
def test_garbage_is_invalid(token: str) -> None:
    with pytest.raises(InvalidToken):
        _service().decode_access(token)


def test_a_token_verified_before_is_refused_once_it_expires() -> None:
    """Verified tokens are remembered, but never past their `exp`."""
    service = _service(access_ttl=timedelta(seconds=1))
    token = service.issue_access(user_id=1, tenant_id=2, role="admin", session_id=uuid.uuid4())
    expires_at = jwt.decode(token, SECRET, algorithms=["HS256"])["exp"]
    assert service.decode_access(token).user_id == 1
    assert service.decode_access(token).user_id == 1  # remembered
    time.sleep(max(0.0, expires_at - time.time()) + 0.05)
    with pytest.raises(InvalidToken):
        service.decode_access(token)


def test_a_remembered_token_is_still_an_access_token_only() -> None:
    service = _service()
    session_id = uuid.uuid4()
    access = service.issue_access(user_id=1, tenant_id=2, role="admin", session_id=session_id)
    service.decode_access(access)
    with pytest.raises(InvalidToken):
        service.decode_refresh(access)
    with pytest.raises(InvalidToken):
        service.decode_access(access[:-2] + ("A" if access[-2] != "A" else "B") + access[-1])
