"""The `stoflow` command line: run the platform, its parts, and operator tasks."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from ops.config.logs import configure_logging
from ops.config.settings import Settings

app = typer.Typer(help="Stoflow: write a product once, publish it everywhere.", no_args_is_help=True)

PLATFORMS = ("vinted", "ebay", "etsy", "ai")
STATE_DIR = Path(".stoflow")


def _settings() -> Settings:
    try:
        settings = Settings()
    except ValidationError as error:
        # Name the variable and the rule, without pydantic's noise (and never the value).
        for problem in error.errors():
            typer.echo(f"configuration error: {problem['msg'].removeprefix('Value error, ')}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings)
    return settings


def _require_urls(settings: Settings) -> None:
    if settings.database_url is None or settings.redis_url is None:
        typer.echo("DATABASE_URL and REDIS_URL must be set (or use `stoflow up`).", err=True)
        raise typer.Exit(2)


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the HTTP gateway."""
    import uvicorn

    from gateway.app import create_app
    from migrations.runner import upgrade_tenant_schema

    settings = _settings()
    _require_urls(settings)
    uvicorn.run(
        create_app(settings, tenant_migrator=upgrade_tenant_schema),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
    )


@app.command()
def migrate(
    concurrency: Annotated[int, typer.Option(min=1, max=32, help="Tenant schemas migrated at a time.")] = 4,
) -> None:
    """Upgrade the core schemas, then every tenant schema (idempotent, resumable)."""
    from migrations.runner import migrate_all
    from persistence.database import connect_database

    settings = _settings()
    _require_urls(settings)

    async def run() -> int:
        database = connect_database(settings.async_database_url, pool_size=concurrency)
        try:
            report = await migrate_all(database.engine, settings.tenant_schema_prefix, concurrency)
        finally:
            await database.dispose()
        typer.echo(
            f"core at {report.core_revision}; tenants upgraded: {len(report.upgraded)}, "
            f"already current: {len(report.already_current)}, failed: {len(report.failed)}"
        )
        for tenant_id, error in sorted(report.failed.items()):
            typer.echo(f"  tenant {tenant_id}: {error}", err=True)
        return 1 if report.failed else 0

    raise typer.Exit(asyncio.run(run()))


@app.command("rotate-secret")
def rotate_secret() -> None:
    """Re-seal every stored marketplace token under STOFLOW_SECRET_KEY.

    Run with the new secret in STOFLOW_SECRET_KEY and the previous one in STOFLOW_OLD_SECRET_KEYS; once it
    reports no unreadable tokens, STOFLOW_OLD_SECRET_KEYS can be dropped.
    """
    from ops.runtime.secret_rotation import rotate_stored_tokens, unreadable_message

    settings = _settings()
    _require_urls(settings)
    if len(settings.secret_key_ring) < 2:
        typer.echo(
            "STOFLOW_OLD_SECRET_KEYS is empty: set it to the previous STOFLOW_SECRET_KEY, and "
            "STOFLOW_SECRET_KEY to the new one.",
            err=True,
        )
        raise typer.Exit(2)
    report = asyncio.run(rotate_stored_tokens(settings))
    typer.echo(
        f"tenants: {report.tenants}; tokens re-sealed: {report.resealed}; "
        f"unreadable: {sum(len(platforms) for platforms in report.unreadable.values())}"
    )
    if report.unreadable:
        typer.echo(unreadable_message(report), err=True)
        raise typer.Exit(1)


@app.command()
def seed() -> None:
    """Load the shared reference attributes and platform mappings (idempotent)."""
    from ops.runtime.seed import seed_reference_data
    from persistence.database import connect_database

    settings = _settings()
    _require_urls(settings)

    async def run() -> None:
        database = connect_database(settings.async_database_url, pool_size=1)
        try:
            report = await seed_reference_data(database.engine)
        finally:
            await database.dispose()
        typer.echo(f"seeded {report.attributes} attributes and {report.mappings} platform mappings")

    asyncio.run(run())


@app.command()
def dispatcher() -> None:
    """Hand committed queue rows to the worker pools, and sweep for stale ones."""
    from workers.dispatcher import run_dispatcher

    settings = _settings()
    _require_urls(settings)
    asyncio.run(run_dispatcher(settings))


@app.command()
def worker(
    platform: Annotated[str, typer.Option(help="Which pool: vinted, ebay, etsy or ai.")],
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Jobs run at once.")] = 10,
) -> None:
    """Run one worker process of a platform pool."""
    from workers.pool import run_worker

    if platform not in PLATFORMS:
        typer.echo(f"--platform must be one of {', '.join(PLATFORMS)}", err=True)
        raise typer.Exit(2)
    settings = _settings()
    _require_urls(settings)
    run_worker(settings, platform, concurrency)


@app.command()
def sandbox(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8900,
    webhook_url: Annotated[
        str | None, typer.Option(help="The gateway's base URL the sandbox sends marketplace webhooks to.")
    ] = None,
) -> None:
    """Serve the marketplace sandbox (fake eBay, Etsy and Vinted)."""
    from ops.tools.sandbox.server import serve

    settings = Settings()
    configure_logging(settings)
    serve(
        host=host,
        port=port,
        allow_http_images=settings.sandbox_allow_http_images,
        webhook_url=webhook_url or settings.sandbox_webhook_url,
        etsy_webhook_secret=settings.etsy_webhook_secret.get_secret_value(),
    )


operator_app = typer.Typer(help="Operator accounts (the console at /ops).", no_args_is_help=True)
app.add_typer(operator_app, name="operator")


@operator_app.command("create")
def operator_create(
    email: Annotated[str, typer.Option(help="The operator's email (login name).")],
) -> None:
    """Create an operator, or give an existing one a new password; prints the one-time password."""
    from ops.runtime.operators import create_operator

    settings = _settings()
    _require_urls(settings)
    try:
        password, created = asyncio.run(create_operator(settings, email))
    except ValueError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"operator {email} {'created' if created else 'given a new password'}")
    typer.echo(f"password: {password}")


@app.command()
def queues() -> None:
    """Print per platform: pending / queued / running / rate-limited / failed, and the oldest pending age."""
    from workers.queue_stats import print_queue_stats

    settings = _settings()
    _require_urls(settings)
    asyncio.run(print_queue_stats(settings))


@app.command()
def up(
    host: Annotated[str, typer.Option(help="Interface the API listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port the API listens on.")] = 8000,
    sandbox_port: Annotated[int, typer.Option(help="Port of the marketplace sandbox.")] = 8900,
    workers_per_pool: Annotated[int, typer.Option(min=1, max=16, help="Worker processes per pool.")] = 1,
    demo: Annotated[
        bool,
        typer.Option(
            help="Show it working: a demo reseller publishes a sample product everywhere on the sandbox, "
            "sells it on eBay, and the other listings come down (printed as it happens)."
        ),
    ] = False,
) -> None:
    """Run the whole platform: embedded services if no URLs are set, migrate, seed, then supervise."""
    from ops.runtime.platform import run_platform

    settings = _settings()
    raise typer.Exit(
        run_platform(
            settings,
            host=host,
            port=port,
            sandbox_port=sandbox_port,
            workers_per_pool=workers_per_pool,
            state_dir=STATE_DIR.resolve(),
            demo=demo,
        )
    )


PLUGIN_STATE = STATE_DIR / "plugin"


@app.command()
def plugin(
    email: Annotated[str, typer.Option(envvar="STOFLOW_PLUGIN_EMAIL", help="Stoflow login.")],
    password: Annotated[
        str, typer.Option(envvar="STOFLOW_PLUGIN_PASSWORD", help="Stoflow password (better from the env).")
    ],
    api_url: Annotated[str | None, typer.Option(help="Stoflow API URL (default: PUBLIC_BASE_URL).")] = None,
    vinted_url: Annotated[
        str | None, typer.Option(help="Vinted base URL (default: VINTED_API_BASE, else the local sandbox).")
    ] = None,
    write_gap: Annotated[str, typer.Option(help="Least pause before a write, MIN-MAX seconds.")] = "5-12",
    read_gap: Annotated[str, typer.Option(help="Least pause before a read, MIN-MAX seconds.")] = "3-8",
    state_dir: Annotated[Path, typer.Option(help="Where the memory of tasks run is kept.")] = PLUGIN_STATE,
    until_idle: Annotated[bool, typer.Option(help="Stop once nothing is left to do now.")] = False,
    max_tasks: Annotated[int | None, typer.Option(min=1, help="Stop after this many tasks.")] = None,
    sandbox_session: Annotated[
        bool | None,
        typer.Option(
            "--sandbox-session/--no-sandbox-session",
            help="Log members in through the sandbox (default: when the Vinted URL is on this machine).",
        ),
    ] = None,
    cookies_file: Annotated[
        Path | None, typer.Option(help="JSON {vinted_user_id: {cookie: value}} of a logged-in browser.")
    ] = None,
    poll_wait: Annotated[int, typer.Option(min=0, max=30, help="Long-poll wait, seconds.")] = 25,
    rate_limit_backoff: Annotated[float, typer.Option(min=0, help="Pause after a 429, seconds.")] = 900,
    challenge_backoff: Annotated[float, typer.Option(min=0, help="Pause after a challenge, seconds.")] = 1800,
    vinted_limit: Annotated[
        int | None,
        typer.Option(min=1, help="Vinted requests per window per account (default: Stoflow's, else 40)."),
    ] = None,
    vinted_window: Annotated[
        float | None,
        typer.Option(min=0.001, help="That window, seconds (default: Stoflow's, else 7200)."),
    ] = None,
) -> None:
    """Run the reference browser plugin: drain this login's Vinted tasks with the member's sessions."""
    import json
    from urllib.parse import urlsplit

    from ops.tools.plugin_client import BackoffPolicy, PluginClient, PluginClientConfig, parse_gap
    from ops.tools.plugin_client.client import DEFAULT_VINTED_URL
    from ops.tools.plugin_client.errors import PluginClientError

    settings = _settings()
    vinted = vinted_url or settings.vinted_api_base or DEFAULT_VINTED_URL
    if sandbox_session is None:
        sandbox_session = urlsplit(vinted).hostname in {"127.0.0.1", "localhost", "::1"}
    try:
        cookies = json.loads(cookies_file.read_text(encoding="utf-8")) if cookies_file else {}
        config = PluginClientConfig(
            api_url=api_url or settings.public_base_url,
            email=email,
            password=password,
            vinted_url=vinted,
            state_dir=state_dir,
            write_gap=parse_gap(write_gap),
            read_gap=parse_gap(read_gap),
            backoff=BackoffPolicy(rate_limited=rate_limit_backoff, challenge=challenge_backoff),
            sandbox_login=sandbox_session,
            vinted_cookies=cookies,
            poll_wait=poll_wait,
            vinted_limit=vinted_limit,
            vinted_window=vinted_window,
        )
        summary = asyncio.run(PluginClient(config).run(max_tasks=max_tasks, until_idle=until_idle))
    except (PluginClientError, OSError, ValueError) as exc:
        typer.echo(f"stoflow plugin: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    typer.echo(
        f"ran {summary.ran}, re-reported {summary.re_reported}, recovered {summary.recovered}, "
        f"left {summary.released}, reported {summary.reported}, deferred {summary.deferred}"
    )


def main() -> None:  # pragma: no cover - console entry point
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app(prog_name="stoflow")
    sys.exit(0)
