"""Registration and login against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

import httpx
from structlog.testing import capture_logs

from migrations.runner import head_revision
from ops.config.settings import Settings
from tests.support import (
    PASSWORD,
    app_client,
    assert_problem,
    bearer,
    login,
    pg_connection,
    register,
    schema_names,
    schema_tables,
    unique_email,
)

TOKEN_FIELDS = {"access_token", "refresh_token", "token_type", "expires_in"}
USER_FIELDS = {"id", "tenant_id", "email", "full_name", "role", "language", "created_at"}


def _schema(settings: Settings, tenant_id: int) -> str:
    return f"{settings.tenant_schema_prefix}{tenant_id}"


# --- registration -----------------------------------------------------------------------------------


async def test_register_answers_tokens_and_the_admin_user(client: httpx.AsyncClient) -> None:
    email = unique_email("reg")
    response = await client.post(
        "/api/auth/register",
        json={"email": email, "password": PASSWORD, "full_name": "Ada Lovelace", "language": "en"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body.keys() >= TOKEN_FIELDS | {"user"}
    assert body["token_type"] == "bearer"
    assert isinstance(body["expires_in"], int)
    assert body["expires_in"] > 0
    user = body["user"]
    assert user.keys() >= USER_FIELDS
    assert isinstance(user["id"], int)
    assert isinstance(user["tenant_id"], int)
    assert user["email"] == email
    assert user["full_name"] == "Ada Lovelace"
    assert user["role"] == "admin"
    assert user["language"] == "en"
    assert datetime.fromisoformat(user["created_at"]).tzinfo is not None
    # The access token works straight away.
    me = await client.get("/api/auth/me", headers=bearer(body))
    assert me.status_code == 200, me.text
    assert me.json() == user


async def test_register_creates_the_tenant_schema_at_head(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    body = await register(client)
    schema = _schema(migrated, body["user"]["tenant_id"])
    async with pg_connection(migrated) as connection:
        assert schema in await schema_names(connection)
        assert {"products", "product_images", "alembic_version"} <= await schema_tables(connection, schema)
        version = await connection.fetchval(f'SELECT version_num FROM "{schema}".alembic_version')
        tenant = await connection.fetchrow(
            "SELECT tier FROM public.tenants WHERE id = $1", body["user"]["tenant_id"]
        )
        search_path = await connection.fetchval("SHOW search_path")
    assert version == head_revision("tenant")
    assert tenant is not None
    assert tenant["tier"] == migrated.default_tier
    assert schema not in search_path


async def test_each_registration_gets_its_own_tenant(client: httpx.AsyncClient) -> None:
    first = await register(client)
    second = await register(client)
    assert first["user"]["tenant_id"] != second["user"]["tenant_id"]


async def test_duplicate_email_is_taken_whatever_its_case(client: httpx.AsyncClient) -> None:
    local = f"Case-{uuid.uuid4().hex[:8]}"
    await register(client, f"{local}@example.com")
    for variant in (f"{local}@example.com", f"{local.lower()}@EXAMPLE.com", f"{local.upper()}@Example.Com"):
        response = await client.post("/api/auth/register", json={"email": variant, "password": PASSWORD})
        assert_problem(response, 409, "email_taken")


async def test_concurrent_registrations_of_one_email_create_one_account(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    email = unique_email("race")
    responses = await asyncio.gather(
        *(
            client.post("/api/auth/register", json={"email": variant, "password": PASSWORD})
            for variant in (email, email.upper(), email, email.title())
        )
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201, 409, 409, 409], [response.text for response in responses]
    async with pg_connection(migrated) as connection:
        count = await connection.fetchval(
            "SELECT count(*) FROM public.users WHERE lower(email) = lower($1)", email
        )
    assert count == 1


async def test_bad_email_is_a_validation_error(client: httpx.AsyncClient) -> None:
    for email in ("not-an-email", "a@", "", "@example.com"):
        response = await client.post("/api/auth/register", json={"email": email, "password": PASSWORD})
        body = assert_problem(response, 422, "validation_error")
        assert any("email" in error["loc"] for error in body["errors"]), body


async def test_password_length_counts_utf8_bytes(client: httpx.AsyncClient) -> None:
    too_short = "abcdefg"  # 7 bytes
    short_in_chars_long_enough_in_bytes = "éééé"  # 4 characters, 8 bytes
    exactly_72 = "é" * 36  # 36 characters, 72 bytes
    too_long = "é" * 36 + "a"  # 37 characters, 73 bytes
    for password in (too_short, too_long, "ééé" + "a"):
        response = await client.post(
            "/api/auth/register", json={"email": unique_email("pw"), "password": password}
        )
        assert_problem(response, 422, "validation_error")
    for password in (short_in_chars_long_enough_in_bytes, exactly_72):
        email = unique_email("pw")
        response = await client.post("/api/auth/register", json={"email": email, "password": password})
        assert response.status_code == 201, response.text
        logged_in = await login(client, email, password)
        assert logged_in.status_code == 200, logged_in.text


async def test_far_too_long_password_is_422_not_500(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/register", json={"email": unique_email("pw"), "password": "x" * 5000}
    )
    assert_problem(response, 422, "validation_error")


async def test_login_with_a_password_over_72_bytes_is_invalid_credentials(client: httpx.AsyncClient) -> None:
    """bcrypt refuses more than 72 bytes; a login must answer 401, never 500."""
    email = unique_email("longpw")
    password = "é" * 36
    await register(client, email, password=password)
    for candidate_email in (email, unique_email("nobody")):
        response = await login(client, candidate_email, password + "a")
        assert_problem(response, 401, "invalid_credentials")


async def test_tenant_limit_refuses_new_accounts_and_creates_nothing(migrated: Settings) -> None:
    email = unique_email("limit")
    async with pg_connection(migrated) as connection:
        tenants_before = await connection.fetchval("SELECT count(*) FROM public.tenants")
        schemas_before = await schema_names(connection)
    limited = migrated.model_copy(update={"tenant_max_schemas": tenants_before})
    async with app_client(limited) as http:
        response = await http.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    assert_problem(response, 503, "tenant_limit_reached")
    async with pg_connection(migrated) as connection:
        assert await connection.fetchval("SELECT count(*) FROM public.tenants") == tenants_before
        assert await schema_names(connection) == schemas_before
        assert await connection.fetchval("SELECT count(*) FROM public.users WHERE email = $1", email) == 0
    # One more slot and the same email registers.
    roomier = migrated.model_copy(update={"tenant_max_schemas": tenants_before + 1})
    async with app_client(roomier) as http:
        response = await http.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text


async def test_registration_failing_halfway_leaves_nothing_behind(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    """The user insert fails after the tenant row and its schema were made: all of it rolls back."""
    email = unique_email("halfway")
    marker = f"trigger-secret-{uuid.uuid4().hex[:8]}"
    suffix = uuid.uuid4().hex[:8]
    function, trigger = f"test_refuse_user_{suffix}", f"test_refuse_user_{suffix}"
    async with pg_connection(migrated) as connection:
        await connection.execute(
            f"CREATE FUNCTION public.{function}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{marker}'; END $$"
        )
        await connection.execute(
            f"CREATE TRIGGER {trigger} BEFORE INSERT ON public.users FOR EACH ROW "
            f"WHEN (NEW.email = '{email}') EXECUTE FUNCTION public.{function}()"
        )
        try:
            tenants_before = await connection.fetchval("SELECT count(*) FROM public.tenants")
            max_tenant_before = await connection.fetchval("SELECT coalesce(max(id), 0) FROM public.tenants")
            schemas_before = await schema_names(connection)
            with capture_logs() as logs:
                response = await client.post(
                    "/api/auth/register", json={"email": email, "password": PASSWORD}
                )
            assert 500 <= response.status_code < 600, response.text
            assert any(entry["log_level"] == "error" for entry in logs), logs
            assert response.headers["content-type"].startswith("application/problem+json")
            body = response.json()
            assert body["status"] == response.status_code
            assert body["code"]
            assert "Traceback" not in response.text
            assert marker not in response.text
            assert "INSERT" not in response.text
            assert await connection.fetchval("SELECT count(*) FROM public.tenants") == tenants_before
            assert (
                await connection.fetchval(
                    "SELECT count(*) FROM public.tenants WHERE id > $1", max_tenant_before
                )
                == 0
            )
            assert await schema_names(connection) == schemas_before
            assert await connection.fetchval("SELECT count(*) FROM public.users WHERE email = $1", email) == 0
        finally:
            await connection.execute(f"DROP TRIGGER IF EXISTS {trigger} ON public.users")
            await connection.execute(f"DROP FUNCTION IF EXISTS public.{function}()")
    # Nothing was left to block a retry.
    retry = await client.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    assert retry.status_code == 201, retry.text


# --- login ------------------------------------------------------------------------------------------


async def test_login_answers_a_token_pair(client: httpx.AsyncClient) -> None:
    email = unique_email("login")
    registered = await register(client, email)
    response = await login(client, email)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body.keys() >= TOKEN_FIELDS
    assert body["token_type"] == "bearer"
    assert isinstance(body["expires_in"], int)
    assert body["expires_in"] > 0
    assert body["access_token"] != registered["access_token"]
    me = await client.get("/api/auth/me", headers=bearer(body))
    assert me.status_code == 200, me.text
    assert me.json()["id"] == registered["user"]["id"]


async def test_login_email_is_case_insensitive(client: httpx.AsyncClient) -> None:
    email = unique_email("ci")
    await register(client, email)
    response = await login(client, email.upper())
    assert response.status_code == 200, response.text


async def test_wrong_password_and_unknown_email_look_the_same(client: httpx.AsyncClient) -> None:
    email = unique_email("same")
    await register(client, email)
    wrong_password = await login(client, email, "not the password")
    unknown_email = await login(client, unique_email("ghost"), PASSWORD)
    first = assert_problem(wrong_password, 401, "invalid_credentials")
    second = assert_problem(unknown_email, 401, "invalid_credentials")
    assert first == second
    assert wrong_password.headers["content-type"] == unknown_email.headers["content-type"]
    assert email not in wrong_password.text


async def test_login_source_is_recorded_and_checked(client: httpx.AsyncClient, migrated: Settings) -> None:
    email = unique_email("source")
    user_id = (await register(client, email))["user"]["id"]
    for source in ("plugin", "mobile", "web"):
        response = await login(client, email, source=source)
        assert response.status_code == 200, (source, response.text)
    bogus = await login(client, email, source="bogus")
    body = assert_problem(bogus, 422, "validation_error")
    assert any("source" in error["loc"] for error in body["errors"])
    async with pg_connection(migrated) as connection:
        rows = await connection.fetch("SELECT source FROM public.login_sessions WHERE user_id = $1", user_id)
    # One session from the registration itself, then one per accepted login.
    assert sorted(row["source"] for row in rows) == ["mobile", "plugin", "web", "web"]


async def _fail_logins(client: httpx.AsyncClient, emails: list[str]) -> None:
    responses = await asyncio.gather(*(login(client, email, "wrong password!") for email in emails))
    for response in responses:
        assert_problem(response, 401, "invalid_credentials")


def _assert_throttled(response: httpx.Response) -> None:
    assert_problem(response, 429, "too_many_attempts")
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit(), retry_after
    assert 0 < int(retry_after) <= 15 * 60


async def test_ten_failures_lock_a_known_email_even_with_the_right_password(
    client: httpx.AsyncClient,
) -> None:
    victim, bystander = unique_email("victim"), unique_email("bystander")
    await register(client, victim)
    await register(client, bystander)
    # Case variants of the address count against the same email.
    await _fail_logins(client, [victim] * 5 + [victim.upper()] * 5)
    _assert_throttled(await login(client, victim))
    _assert_throttled(await login(client, victim.upper()))
    ok = await login(client, bystander)
    assert ok.status_code == 200, ok.text


async def test_ten_failures_lock_an_unknown_email_too(client: httpx.AsyncClient) -> None:
    ghost = unique_email("ghost")
    await _fail_logins(client, [ghost] * 10)
    _assert_throttled(await login(client, ghost))


async def test_nine_failures_still_let_the_right_password_in(client: httpx.AsyncClient) -> None:
    email = unique_email("nine")
    await register(client, email)
    await _fail_logins(client, [email] * 9)
    response = await login(client, email)
    assert response.status_code == 200, response.text


async def test_sixty_concurrent_guesses_check_at_most_ten_passwords(client: httpx.AsyncClient) -> None:
    email = unique_email("race")
    await register(client, email)
    guesses = ["wrong password!"] * 59 + [PASSWORD]
    responses = await asyncio.gather(*(login(client, email, guess) for guess in guesses))
    statuses = [response.status_code for response in responses]
    checked = [status for status in statuses if status != 429]
    assert len(checked) <= 10, statuses
    assert statuses.count(429) >= 50
    assert set(checked) <= {200, 401}
    for response in responses:
        if response.status_code == 429:
            _assert_throttled(response)


async def test_a_right_password_does_not_use_up_the_email_budget(client: httpx.AsyncClient) -> None:
    email = unique_email("steady")
    await register(client, email)
    for _ in range(12):
        assert (await login(client, email)).status_code == 200


async def test_per_client_limits_on_registration_and_login(migrated: Settings) -> None:
    """Off by default outside production; enabled here, behind a trusted proxy that names the client."""
    limited = migrated.model_copy(
        update={
            "client_ip_limits": True,
            "trusted_proxies": "127.0.0.1",
            "register_ip_limit": 2,
            "login_ip_limit": 3,
        }
    )
    async with app_client(limited) as http:
        first = {"X-Forwarded-For": "203.0.113.5"}
        second = {"X-Forwarded-For": "203.0.113.6"}
        emails = []
        for _ in range(2):
            email = unique_email("ip")
            emails.append(email)
            response = await http.post(
                "/api/auth/register", json={"email": email, "password": PASSWORD}, headers=first
            )
            assert response.status_code == 201, response.text
        refused = await http.post(
            "/api/auth/register", json={"email": unique_email("ip"), "password": PASSWORD}, headers=first
        )
        body = assert_problem(refused, 429, "too_many_requests")
        assert int(refused.headers["retry-after"]) > 0
        assert "203.0.113.5" not in str(body)
        other = await http.post(
            "/api/auth/register", json={"email": unique_email("ip"), "password": PASSWORD}, headers=second
        )
        assert other.status_code == 201, other.text

        credentials = {"email": emails[0], "password": PASSWORD}
        for _ in range(3):
            response = await http.post("/api/auth/login", json=credentials, headers=first)
            assert response.status_code == 200, response.text
        assert_problem(
            await http.post("/api/auth/login", json=credentials, headers=first), 429, "too_many_requests"
        )
        ok = await http.post("/api/auth/login", json=credentials, headers=second)
        assert ok.status_code == 200, ok.text
