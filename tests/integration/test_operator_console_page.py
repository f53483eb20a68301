"""GET /ops: login form without a session, the console with one, tenants refused, strict CSP."""

from __future__ import annotations

import re

import httpx

from ops.config.settings import Settings
from ops.runtime.operators import create_operator
from tests.support import PASSWORD, assert_problem, bearer, register, unique_email


def _cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"stoflow_ops={token}"}


async def _operator_cookie(client: httpx.AsyncClient, settings: Settings) -> str:
    email = unique_email("operator")
    password, _created = await create_operator(settings, email)
    response = await client.post("/ops/login", data={"email": email, "password": password})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/ops"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ops" in cookie
    match = re.match(r"stoflow_ops=([^;]+);", cookie)
    assert match is not None
    return match.group(1)


async def test_without_a_session_the_page_is_its_login_form_under_a_strict_csp(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/ops")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="login-form"' in page.text and 'action="/ops/login"' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, flags=re.S)
    assert scripts and all('src="/ops/static/' in attrs and not body.strip() for attrs, body in scripts)
    asset = await client.get("/ops/static/htmx.min.js")
    assert asset.status_code == 200 and asset.headers["content-type"].startswith("text/javascript")
    assert_problem(await client.get("/ops/static/..%2Fpage.py"), 404, "not_found")


async def test_an_operator_logs_in_on_the_page_and_sees_the_console(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    token = await _operator_cookie(client, migrated)
    page = await client.get("/ops", headers=_cookie(token))
    assert page.status_code == 200
    assert 'id="pools"' in page.text and 'hx-get="/ops/panel"' in page.text and token not in page.text
    panel = await client.get("/ops/panel", headers=_cookie(token))
    assert panel.status_code == 200 and "Vinted budgets" in panel.text
    # Logging out revokes that login: the old cookie no longer opens the console.
    out = await client.post("/ops/logout", headers=_cookie(token))
    assert out.status_code == 303 and 'stoflow_ops=""' in out.headers["set-cookie"]
    again = await client.get("/ops", headers=_cookie(token))
    assert 'id="login-form"' in again.text
    gone = await client.get("/ops/panel", headers=_cookie(token))
    assert gone.status_code == 401 and gone.headers["hx-refresh"] == "true"


async def test_wrong_passwords_and_resellers_do_not_get_a_console_session(client: httpx.AsyncClient) -> None:
    reseller = await register(client)
    wrong = await client.post("/ops/login", data={"email": unique_email(), "password": "not-the-one"})
    assert wrong.status_code == 401 and "wrong" in wrong.text and "set-cookie" not in wrong.headers
    refused = await client.post("/ops/login", data={"email": reseller["user"]["email"], "password": PASSWORD})
    assert refused.status_code == 403 and "set-cookie" not in refused.headers
    assert "for operator accounts" in refused.text


async def test_a_tenant_token_on_the_console_is_forbidden(client: httpx.AsyncClient) -> None:
    tokens = await register(client)
    assert_problem(await client.get("/ops", headers=bearer(tokens)), 403, "forbidden")
    assert_problem(await client.get("/ops", headers=_cookie(tokens["access_token"])), 403, "forbidden")
    assert_problem(await client.get("/ops/panel", headers=bearer(tokens)), 403, "forbidden")


async def test_a_retry_without_htmx_header_is_refused_as_cross_site(
    client: httpx.AsyncClient, migrated: Settings
) -> None:
    token = await _operator_cookie(client, migrated)
    path = "/ops/jobs/1/00000000-0000-0000-0000-000000000001/retry"
    assert_problem(await client.post(path, headers=_cookie(token)), 403, "forbidden")
    note = await client.post(path, headers={**_cookie(token), "HX-Request": "true"})
    assert note.status_code == 200 and "No such job" in note.text
