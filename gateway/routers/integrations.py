"""/api/integrations: connect eBay and Etsy (tokens sealed at rest), Vinted accounts (no secrets at all)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from domain.errors import Conflict, NotFound
from gateway import publishing
from gateway.dependencies import CurrentPrincipal, Services, TenantSession, UnitOfWorkRoute
from gateway.request_input import parse_path_id
from gateway.schemas.integrations import (
    EbayConnection,
    EtsyConnection,
    VintedAccountIn,
    VintedAccountOut,
    VintedAccounts,
)
from ops.adapters.rate_limit import read_usage, seed_if_missing, vinted_member_key
from ops.adapters.secrets_box import SecretsBox
from persistence import credentials, directory, plugin_tasks, sale_checks
from persistence.tenant_models import VintedAccount

router = APIRouter(prefix="/api/integrations", tags=["integrations"], route_class=UnitOfWorkRoute)


def _box(services: Services) -> SecretsBox:
    return SecretsBox.from_settings(services.settings)


async def _connect(
    session: TenantSession,
    tenant_id: int,
    box: SecretsBox,
    platform: str,
    tokens: dict[str, str],
    settings: dict[str, Any],
) -> dict[str, Any]:
    await publishing.check_platform_quota(session, tenant_id, {platform})
    await credentials.put_credential(session, platform, box.seal(tokens), settings)
    # Sales of this account are looked for from now on; webhooks naming its shop or user find this tenant.
    await sale_checks.schedule(session, platform, tenant_id)
    for field, kind in (("shop_id", "shop"), ("username", "user")):
        if settings.get(field):
            await directory.register(session, tenant_id, platform, kind, str(settings[field]))
    return {"platform": platform, "connected": True, **settings}


@router.put("/ebay", responses={403: {"description": "quota_exceeded"}})
async def connect_ebay(
    body: EbayConnection, principal: CurrentPrincipal, services: Services, session: TenantSession
) -> dict[str, Any]:
    """Connect (or reconnect) the eBay seller account; the tokens are stored encrypted."""
    settings = body.model_dump(exclude={"access_token", "refresh_token"}, exclude_none=True)
    tokens = {"access_token": body.access_token, "refresh_token": body.refresh_token}
    return await _connect(session, principal.tenant_id, _box(services), "ebay", tokens, settings)


@router.put("/etsy", responses={403: {"description": "quota_exceeded"}})
async def connect_etsy(
    body: EtsyConnection, principal: CurrentPrincipal, services: Services, session: TenantSession
) -> dict[str, Any]:
    """Connect (or reconnect) the Etsy shop; the tokens are stored encrypted."""
    settings = {"shop_id": str(body.shop_id), "shipping_profile_id": str(body.shipping_profile_id)}
    tokens = {"access_token": body.access_token, "refresh_token": body.refresh_token}
    return await _connect(session, principal.tenant_id, _box(services), "etsy", tokens, settings)


@router.get("")
async def list_integrations(session: TenantSession) -> dict[str, Any]:
    """What is connected, without any secret."""
    answer: dict[str, Any] = {}
    for platform in ("ebay", "etsy"):
        credential = await credentials.get_credential(session, platform)
        answer[platform] = (
            {"connected": True, "connected_at": credential.connected_at.isoformat(), **credential.settings}
            if credential is not None
            else {"connected": False}
        )
    accounts = int(await session.scalar(select(func.count()).select_from(VintedAccount)) or 0)
    answer["vinted"] = {"connected": accounts > 0, "accounts": accounts}
    return answer


@router.delete("/{platform}", status_code=204, response_class=Response)
async def disconnect(
    platform: Annotated[str, Path(description="vinted, ebay or etsy")],
    principal: CurrentPrincipal,
    session: TenantSession,
) -> Response:
    """Forget a platform's connection (Vinted: every account)."""
    if platform in ("vinted", "ebay", "etsy"):
        await sale_checks.unschedule(session, platform, principal.tenant_id)
    if platform in ("ebay", "etsy"):
        await credentials.delete_credential(session, platform)
    elif platform == "vinted":
        await session.execute(delete(VintedAccount))
    else:
        raise NotFound("No such platform.")
    return Response(status_code=204)


def _account_out(account: VintedAccount) -> VintedAccountOut:
    return VintedAccountOut.model_validate(account, from_attributes=True)


@router.post("/vinted/accounts", status_code=201, responses={403: {"description": "quota_exceeded"}})
async def add_vinted_account(
    body: VintedAccountIn, principal: CurrentPrincipal, session: TenantSession
) -> VintedAccountOut:
    """Link a Vinted account; the plugin keeps the session, the backend never sees a password or cookie."""
    await publishing.check_platform_quota(session, principal.tenant_id, {"vinted"})
    account = VintedAccount(vinted_user_id=str(body.vinted_user_id), username=body.username)
    session.add(account)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("This Vinted account is already linked.") from None
    await session.refresh(account)
    # The member's sold orders are read through the plugin from now on (within the checks' share).
    await sale_checks.schedule(session, "vinted", principal.tenant_id, account.vinted_user_id)
    return _account_out(account)


@router.get("/vinted/accounts")
async def list_vinted_accounts(session: TenantSession) -> VintedAccounts:
    """Every linked Vinted account."""
    rows = await session.scalars(select(VintedAccount).order_by(VintedAccount.id))
    return VintedAccounts(items=[_account_out(row) for row in rows])


async def account_id_of(account_id: Annotated[str, Path(description="The Vinted account's id.")]) -> int:
    parsed = parse_path_id(account_id)
    if parsed is None:
        raise NotFound("No such Vinted account.")
    return parsed


AccountId = Annotated[int, Depends(account_id_of)]


@router.get("/vinted/accounts/{account_id}/rate-limit", responses={404: {"description": "not_found"}})
async def vinted_rate_limit(
    account_id: AccountId, principal: CurrentPrincipal, services: Services, session: TenantSession
) -> dict[str, Any]:
    """The account's live request budget: requests released to the plugin in the last window."""
    account = await session.get(VintedAccount, account_id)
    if account is None:
        raise NotFound("No such Vinted account.")
    settings = services.settings
    key = vinted_member_key(account.vinted_user_id)
    window = settings.vinted_rate_window_seconds
    # Redis may have lost the log: rebuild it from what PostgreSQL knows was released, then read it.
    await seed_if_missing(
        services.redis,
        key,
        await plugin_tasks.member_releases(session, account.vinted_user_id, window),
        window_seconds=window,
    )
    usage = await read_usage(services.redis, key, limit=settings.vinted_rate_limit, window_seconds=window)
    return {
        "limit": usage.limit,
        "window_seconds": usage.window_seconds,
        "used": usage.used,
        "remaining": usage.remaining,
        "resets_at": usage.resets_at.isoformat().replace("+00:00", "Z") if usage.resets_at else None,
    }
