"""Refresh rotation with reuse detection, logout, and forged or malformed access tokens."""

from __future__ import annotations

import uuid
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning

from ops.config.settings import Settings
from tests.support import assert_problem, bearer, login, register, unique_email

WRONG_KEY = "not-the-server-key-" + "x" * 45


async def _refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post("/api/auth/refresh", json={"refresh_token": refresh_token})


async def _me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})


# --- refresh rotation -------------------------------------------------------------------------------


async def test_refresh_rotates_and_a_reused_token_revokes_the_chain(client: httpx.AsyncClient) -> None:
    first = await register(client)
    rotated = await _refresh(client, first["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second.keys() >= {"access_token", "refresh_token", "token_type", "expires_in"}
    assert second["token_type"] == "bearer"
    assert second["refresh_token"] != first["refresh_token"]
    assert (await _me(client, second["access_token"])).status_code == 200

    # The spent token comes back (a thief, or a replay): refused, and the whole chain dies.
    assert_problem(await _refresh(client, first["refresh_token"]), 401, "token_reused")
    assert_problem(await _refresh(client, second["refresh_token"]), 401, "invalid_token")
    # Spent stays spent, even after the revocation.
    assert_problem(await _refresh(client, first["refresh_token"]), 401, "token_reused")
    # The access tokens of that login die with it.
    assert_problem(await _me(client, second["access_token"]), 401, "invalid_token")


async def test_a_chain_of_rotations_keeps_working(client: httpx.AsyncClient) -> None:
    tokens = await register(client)
    for _ in range(3):
        response = await _refresh(client, tokens["refresh_token"])
        assert response.status_code == 200, response.text
        tokens = response.json()
    assert (await _me(client, tokens["access_token"])).status_code == 200


async def test_revoking_one_login_chain_leaves_another_login_alone(client: httpx.AsyncClient) -> None:
    email = unique_email("chains")
    await register(client, email)
    first_login = (await login(client, email)).json()
    other_login = (await login(client, email, source="plugin")).json()
    rotated = await _refresh(client, first_login["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    assert_problem(await _refresh(client, first_login["refresh_token"]), 401, "token_reused")
    assert_problem(await _refresh(client, rotated.json()["refresh_token"]), 401, "invalid_token")

    assert (await _me(client, other_login["access_token"])).status_code == 200
    still_fine = await _refresh(client, other_login["refresh_token"])
    assert still_fine.status_code == 200, still_fine.text


async def test_logout_revokes_the_refresh_token(client: httpx.AsyncClient) -> None:
    tokens = await register(client)
    response = await client.post(
        "/api/auth/logout", json={"refresh_token": tokens["refresh_token"]}, headers=bearer(tokens)
    )
    assert response.status_code == 204, response.text
    assert response.content == b""
    # Logged out, never spent: invalid, not "reused".
    assert_problem(await _refresh(client, tokens["refresh_token"]), 401, "invalid_token")
    assert_problem(await _refresh(client, tokens["refresh_token"]), 401, "invalid_token")


async def test_logout_needs_a_bearer_token(client: httpx.AsyncClient) -> None:
    tokens = await register(client)
    response = await client.post("/api/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    assert_problem(response, 401, "not_authenticated")
    # Nothing was revoked by the refused call.
    assert (await _refresh(client, tokens["refresh_token"])).status_code == 200


async def test_logout_of_another_users_refresh_token_is_refused(client: httpx.AsyncClient) -> None:
    mine, theirs = await register(client), await register(client)
    response = await client.post(
        "/api/auth/logout", json={"refresh_token": theirs["refresh_token"]}, headers=bearer(mine)
    )
    assert_problem(response, 401, "invalid_token")
    assert (await _refresh(client, theirs["refresh_token"])).status_code == 200


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c"])
async def test_malformed_refresh_tokens_are_refused(client: httpx.AsyncClient, token: str) -> None:
    response = await _refresh(client, token)
    assert response.status_code in {401, 422}, response.text
    assert response.json()["code"] in {"invalid_token", "validation_error"}


async def test_an_access_token_is_not_a_refresh_token(client: httpx.AsyncClient) -> None:
    tokens = await register(client)
    assert_problem(await _refresh(client, tokens["access_token"]), 401, "invalid_token")


# --- access tokens ----------------------------------------------------------------------------------


def _claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _sign(claims: dict[str, Any], key: str, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


@pytest.fixture
async def genuine(client: httpx.AsyncClient, migrated: Settings) -> dict[str, Any]:
    """Claims of a real access token, and proof that re-signing them with the server key is accepted."""
    tokens = await register(client)
    claims = _claims_of(tokens["access_token"])
    assert claims["sub"] == str(tokens["user"]["id"])
    assert claims["tenant_id"] == tokens["user"]["tenant_id"]
    assert claims["type"] == "access"
    assert claims["role"] == "admin"
    assert {"exp", "iat", "jti"} <= claims.keys()
    assert claims["exp"] - claims["iat"] == 24 * 3600
    key = migrated.jwt_secret_key.get_secret_value()
    resigned = await _me(client, _sign({**claims, "jti": uuid.uuid4().hex}, key))
    assert resigned.status_code == 200, resigned.text
    return {"claims": claims, "key": key}


def _forge(genuine: dict[str, Any], **changes: Any) -> str:
    claims = {key: value for key, value in {**genuine["claims"], **changes}.items() if value is not None}
    return _sign(claims, genuine["key"])


async def test_alg_none_is_refused(client: httpx.AsyncClient, genuine: dict[str, Any]) -> None:
    token = jwt.encode(genuine["claims"], None, algorithm="none")
    assert_problem(await _me(client, token), 401, "invalid_token")
    # Hand-made too: a header claiming "none" and an empty signature.
    header, payload, _ = _sign(genuine["claims"], genuine["key"]).split(".")
    none_header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    assert_problem(await _me(client, f"{none_header}.{payload}."), 401, "invalid_token")
    assert header != none_header


async def test_another_algorithm_with_the_right_key_is_refused(
    client: httpx.AsyncClient, genuine: dict[str, Any]
) -> None:
    with warnings.catch_warnings():
        # The dev key is short for HS512; the point is only that the server refuses the algorithm.
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        token = _sign(genuine["claims"], genuine["key"], algorithm="HS512")
    assert_problem(await _me(client, token), 401, "invalid_token")


async def test_a_wrong_signing_key_is_refused(client: httpx.AsyncClient, genuine: dict[str, Any]) -> None:
    token = _sign(genuine["claims"], WRONG_KEY)
    assert_problem(await _me(client, token), 401, "invalid_token")


async def test_an_expired_token_is_refused(client: httpx.AsyncClient, genuine: dict[str, Any]) -> None:
    past = datetime.now(UTC) - timedelta(minutes=5)
    token = _forge(genuine, exp=int(past.timestamp()), iat=int((past - timedelta(hours=1)).timestamp()))
    assert_problem(await _me(client, token), 401, "invalid_token")


async def test_a_token_without_exp_is_refused(client: httpx.AsyncClient, genuine: dict[str, Any]) -> None:
    claims = {key: value for key, value in genuine["claims"].items() if key != "exp"}
    token = _sign(claims, genuine["key"])
    assert_problem(await _me(client, token), 401, "invalid_token")


async def test_a_refresh_typed_token_is_not_an_access_token(
    client: httpx.AsyncClient, genuine: dict[str, Any]
) -> None:
    token = _forge(genuine, type="refresh")
    assert_problem(await _me(client, token), 401, "invalid_token")


async def test_a_real_refresh_token_is_not_an_access_token(client: httpx.AsyncClient) -> None:
    tokens = await register(client)
    assert_problem(await _me(client, tokens["refresh_token"]), 401, "invalid_token")


@pytest.mark.parametrize("tenant_id", ["as-string", 0, -1, None, 1.5, True])
async def test_tenant_id_must_be_a_positive_integer(
    client: httpx.AsyncClient, genuine: dict[str, Any], tenant_id: Any
) -> None:
    value = str(genuine["claims"]["tenant_id"]) if tenant_id == "as-string" else tenant_id
    if tenant_id is None:
        claims = {key: v for key, v in genuine["claims"].items() if key != "tenant_id"}
        token = _sign(claims, genuine["key"])
    else:
        token = _forge(genuine, tenant_id=value)
    assert_problem(await _me(client, token), 401, "invalid_token")


async def test_a_non_numeric_subject_is_refused(client: httpx.AsyncClient, genuine: dict[str, Any]) -> None:
    assert_problem(await _me(client, _forge(genuine, sub="admin")), 401, "invalid_token")


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "eyJ.eyJ.sig", "x" * 2000])
async def test_garbage_tokens_are_refused(client: httpx.AsyncClient, token: str) -> None:
    assert_problem(await _me(client, token), 401, "invalid_token")


async def test_missing_authorization_is_not_authenticated(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/auth/me")
    assert_problem(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"].lower().startswith("bearer")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token abc", "bearer"])
async def test_non_bearer_authorization_is_not_authenticated(client: httpx.AsyncClient, header: str) -> None:
    response = await client.get("/api/auth/me", headers={"Authorization": header})
    assert_problem(response, 401, "not_authenticated")


async def test_bearer_scheme_is_case_insensitive(client: httpx.AsyncClient) -> None:
    tokens = await register(client)
    response = await client.get("/api/auth/me", headers={"Authorization": f"bearer {tokens['access_token']}"})
    assert response.status_code == 200, response.text


# --- the token's user, tenant and login are checked per request --------------------------------------


async def test_a_validly_signed_token_naming_another_tenant_is_refused(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    """Whoever holds the signing key still cannot point a user's token at another tenant's schema."""
    mine, victim = await register(client), await register(client)
    claims = {**_claims_of(mine["access_token"]), "tenant_id": victim["user"]["tenant_id"]}
    minted = _sign(claims, migrated.jwt_secret_key.get_secret_value())
    assert_problem(await _me(client, minted), 401, "invalid_token")
    listed = await client.get("/api/products", headers={"Authorization": f"Bearer {minted}"})
    assert_problem(listed, 401, "invalid_token")
    # The untouched token still works.
    assert (await _me(client, mine["access_token"])).status_code == 200


async def test_logout_refuses_that_logins_access_tokens_at_once(client: httpx.AsyncClient) -> None:
    tokens = await register(client)
    other_login = (await login(client, tokens["user"]["email"])).json()
    response = await client.post(
        "/api/auth/logout", json={"refresh_token": tokens["refresh_token"]}, headers=bearer(tokens)
    )
    assert response.status_code == 204, response.text
    assert_problem(await _me(client, tokens["access_token"]), 401, "invalid_token")
    # Another login of the same user lives on.
    assert (await _me(client, other_login["access_token"])).status_code == 200


async def test_an_idempotent_replay_is_refused_to_a_revoked_token(client: httpx.AsyncClient) -> None:
    tokens = await register(client)
    keyed = {**bearer(tokens), "Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    body = {"title": "Veste", "price": "20.00"}
    first = await client.post("/api/products", json=body, headers=keyed)
    assert first.status_code == 201, first.text
    await client.post(
        "/api/auth/logout", json={"refresh_token": tokens["refresh_token"]}, headers=bearer(tokens)
    )
    assert_problem(await client.post("/api/products", json=body, headers=keyed), 401, "invalid_token")
