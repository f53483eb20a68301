"""`stoflow up`: one command that brings the whole platform up on one machine."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

import httpx
import structlog

from ops.config.settings import Settings
from ops.runtime.demo import run_demo
from ops.runtime.embedded import free_port
from ops.runtime.service_urls import resolve_service_urls
from ops.runtime.supervisor import ChildSpec, Supervisor

log = structlog.get_logger(__name__)

POOLS = ("vinted", "ebay", "etsy", "ai")


class UnreadableStoredSecrets(RuntimeError):
    """Stored marketplace tokens that the configured secrets cannot open: refuse to start."""


async def _prepare_database(settings: Settings) -> None:
    from migrations.runner import migrate_all
    from ops.runtime.seed import seed_reference_data
    from persistence.database import connect_database

    database = connect_database(settings.async_database_url, pool_size=4)
    try:
        report = await migrate_all(database.engine, settings.tenant_schema_prefix)
        seeded = await seed_reference_data(database.engine)
    finally:
        await database.dispose()
    from ops.runtime.secret_rotation import unreadable_message, unreadable_stored_tokens

    unreadable = await unreadable_stored_tokens(settings)
    if unreadable.unreadable:
        raise UnreadableStoredSecrets(unreadable_message(unreadable))
    log.info(
        "database_ready",
        tenants_upgraded=len(report.upgraded),
        tenants_failed=len(report.failed),
        attributes=seeded.attributes,
    )


def _wait_for_http(url: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


DEMO_EMAIL = "demo@stoflow.example"
DEMO_PASSWORD = "stoflow-demo-password"  # noqa: S105 - a throwaway account on the local sandbox


async def _demo_on_pro_plan(settings: Settings) -> None:
    """The demo reseller publishes to three marketplaces: the `pro` plan (free allows two)."""
    from sqlalchemy import text

    from persistence.database import connect_database

    database = connect_database(settings.async_database_url, pool_size=1)
    try:
        async with database.session_factory() as session, session.begin():
            await session.execute(
                text(
                    "UPDATE public.tenants SET tier = 'pro' WHERE id = "
                    "(SELECT tenant_id FROM public.users WHERE email = :email)"
                ),
                {"email": DEMO_EMAIL},
            )
    finally:
        await database.dispose()


def _prepare_demo(api: str, sandbox: str, settings: Settings) -> dict[str, str]:
    """A demo reseller on the sandbox's eBay seller, Etsy shop and a Vinted member; its bearer headers."""
    from ops.runtime.demo import connect_demo_marketplaces

    credentials = {"email": DEMO_EMAIL, "password": DEMO_PASSWORD}
    with httpx.Client(timeout=10) as http:
        answer = http.post(f"{api}/api/auth/register", json=credentials)
        if answer.status_code == 409:
            answer = http.post(f"{api}/api/auth/login", params={"source": "web"}, json=credentials)
        answer.raise_for_status()
        asyncio.run(_demo_on_pro_plan(settings))
        headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        connect_demo_marketplaces(http, api, sandbox, headers)
        tokens = http.post(f"{sandbox}/_sandbox/ebay/accounts", json={}).json()
        ebay = {
            "access_token": tokens["access_token"],
            "refresh_token": tokens["refresh_token"],
            "marketplace_id": "EBAY_FR",
            "fulfillment_policy_id": "demo-fulfillment",
            "payment_policy_id": "demo-payment",
            "return_policy_id": "demo-return",
            "merchant_location_key": "demo-paris",
        }
        http.put(f"{api}/api/integrations/ebay", json=ebay, headers=headers).raise_for_status()
        account = http.post(
            f"{api}/api/integrations/vinted/accounts",
            json={"vinted_user_id": 4242, "username": "demo_vinted"},
            headers=headers,
        )
        if account.status_code not in (201, 409):
            account.raise_for_status()
    return headers


def run_platform(
    settings: Settings,
    *,
    host: str,
    port: int,
    sandbox_port: int,
    workers_per_pool: int,
    state_dir: Path,
    demo: bool = False,
) -> int:
    """Start (embedded) services, migrate and seed, then supervise gateway, dispatcher, pools, sandbox."""
    urls = resolve_service_urls(settings.database_url, settings.redis_url, state_dir, try_local=False)
    try:
        env = {"DATABASE_URL": urls.database_url, "REDIS_URL": urls.redis_url, "PYTHONUNBUFFERED": "1"}
        if "public_base_url" not in settings.model_fields_set:
            # Marketplaces fetch images from the signed /media URLs: point them at this API.
            env["PUBLIC_BASE_URL"] = f"http://{host}:{port}"
        if urls.embedded:
            log.info("embedded_services_started", services=[service.name for service in urls.embedded])
        configured = settings.model_copy(
            update={"database_url": urls.database_url, "redis_url": urls.redis_url}
        )
        try:
            asyncio.run(_prepare_database(configured))
        except UnreadableStoredSecrets as error:
            print(f"stoflow up: refusing to start: {error}", file=sys.stderr, flush=True)
            return 2

        stoflow = [sys.executable, "-m", "ops"]
        children: list[ChildSpec] = []
        sandbox_url: str | None = None
        if (
            settings.ebay_api_base is None
            or settings.etsy_api_base is None
            or settings.vinted_api_base is None
        ):
            if sandbox_port == 0:
                sandbox_port = free_port()
            sandbox_url = f"http://127.0.0.1:{sandbox_port}"
            # The sandbox sends its webhooks (signed as the real ones) to the gateway it runs with.
            sandbox_args = ["sandbox", "--port", str(sandbox_port), "--webhook-url", f"http://{host}:{port}"]
            children.append(ChildSpec("sandbox", [*stoflow, *sandbox_args]))
            env.setdefault("EBAY_API_BASE", settings.ebay_api_base or sandbox_url)
            env.setdefault("ETSY_API_BASE", settings.etsy_api_base or sandbox_url)
            env.setdefault("VINTED_API_BASE", settings.vinted_api_base or sandbox_url)
        children.append(ChildSpec("api", [*stoflow, "api", "--host", host, "--port", str(port)], env))
        children.append(ChildSpec("dispatcher", [*stoflow, "dispatcher"], env))
        for pool in POOLS:
            for index in range(workers_per_pool):
                name = f"worker-{pool}" + (f"-{index + 1}" if workers_per_pool > 1 else "")
                children.append(ChildSpec(name, [*stoflow, "worker", "--platform", pool], env))

        supervisor = Supervisor()
        supervisor.start(children)
        base = f"http://{host}:{port}"
        if _wait_for_http(f"{base}/ready"):
            print(
                f"\nStoflow is up.\n  API:     {base}\n  Docs:    {base}/docs\n  Ready:   {base}/ready\n",
                flush=True,
            )
            if demo and sandbox_url is not None:
                demo_headers = _prepare_demo(base, sandbox_url, configured)
                plugin_env = {
                    **env,
                    "STOFLOW_PLUGIN_EMAIL": DEMO_EMAIL,
                    "STOFLOW_PLUGIN_PASSWORD": DEMO_PASSWORD,
                }
                plugin = [*stoflow, "plugin", "--api-url", base, "--vinted-url", sandbox_url]
                plugin += [
                    "--write-gap",
                    "1-2",
                    "--read-gap",
                    "0-1",
                    "--state-dir",
                    str(state_dir / "plugin"),
                ]
                supervisor.start([ChildSpec("plugin", plugin, plugin_env)])
                print(
                    f"  Demo:    {DEMO_EMAIL} / {DEMO_PASSWORD} (eBay, Etsy, Vinted via the plugin)\n",
                    flush=True,
                )
                threading.Thread(
                    target=run_demo, args=(base, sandbox_url, demo_headers), name="demo", daemon=True
                ).start()
        else:
            log.warning("api_not_ready_yet", url=f"{base}/ready")
        return supervisor.run_until_stopped()
    finally:
        urls.stop_embedded()
