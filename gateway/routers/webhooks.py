"""/api/webhooks: marketplaces push sales (and eBay its account deletions). No Authorization: a signature.

A webhook names the marketplace's listing, shop or user, never our tenant: the public marketplace
directory routes it, so another tenant's listing changes nothing of this one. Every order line goes
through the one sale-recording function, keyed by platform + order: a replayed or duplicated webhook, or a
sale check that finds the same order, records nothing more.

- eBay (`ORDER_CONFIRMATION`, `MARKETPLACE_ACCOUNT_DELETION`): ECDSA signature in `x-ebay-signature`,
  checked with eBay's public key for its `kid`; GET answers the endpoint-validation challenge.
- Etsy (`order.paid`): Standard Webhooks HMAC with the signing secret and a timestamp (replays refused);
  its payload names only the shop and the receipt's URL, so the shop's sale check runs at once and reads
  the receipt (the gateway never calls a marketplace with a seller's tokens).
"""

from __future__ import annotations

import json
import time
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from domain.sales import OrderLine, SaleSource, ebay_order_lines
from gateway.dependencies import Services
from gateway.ebay_keys import EbayKeyring, KeyUnavailable, KeyUnknown
from gateway.problems import ProblemError
from gateway.services import GatewayServices
from gateway.webhook_signatures import (
    SignatureRefused,
    ebay_challenge_response,
    parse_ebay_signature,
    verify_ebay_signature,
    verify_etsy_signature,
)
from persistence import credentials, directory, sale_checks, sales
from persistence.tenancy import tenant_transaction

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])
log = structlog.get_logger(__name__)

_SIGNATURE_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "invalid_signature: unsigned, forged or replayed"},
    422: {"description": "validation_error: the body is not a JSON object"},
}


def _invalid_signature(reason: str) -> ProblemError:
    log.warning("webhook_refused", reason=reason)
    return ProblemError(401, "invalid_signature", "The webhook's signature does not verify.")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ProblemError(
            422,
            "validation_error",
            "The body must be a JSON object.",
            errors=[{"loc": ["body"], "msg": "not a JSON object"}],
        )
    return parsed


def _keyring(request: Request, services: GatewayServices) -> EbayKeyring:
    keyring: EbayKeyring | None = getattr(request.app.state, "ebay_keyring", None)
    if keyring is None:
        keyring = EbayKeyring(services.settings)
        request.app.state.ebay_keyring = keyring
    return keyring


async def _tenants(services: GatewayServices, platform: str, kind: str, key: str) -> list[int]:
    async with services.db.session_factory() as session:
        return await directory.tenants_of(session, platform, kind, key)


def _in_tenant(services: GatewayServices, tenant_id: int) -> AbstractAsyncContextManager[AsyncSession]:
    return tenant_transaction(services.db.session_factory, services.settings.tenant_schema_prefix, tenant_id)


# --- eBay ----------------------------------------------------------------------------------------------


@router.get("/ebay")
async def ebay_challenge(
    challenge_code: Annotated[str, Query(min_length=1, max_length=256)], services: Services
) -> dict[str, str]:
    """eBay's endpoint validation: prove we hold the verification token for this endpoint URL."""
    settings = services.settings
    answer = ebay_challenge_response(
        challenge_code, settings.ebay_verification_token.get_secret_value(), settings.ebay_webhook_endpoint
    )
    return {"challengeResponse": answer}


async def _record_lines(services: GatewayServices, lines: list[OrderLine]) -> None:
    for line in lines:
        for tenant_id in await _tenants(services, line.platform, "listing", line.external_id):
            async with _in_tenant(services, tenant_id) as session:
                recorded = await sales.record_order_line(session, tenant_id, line, SaleSource.WEBHOOK)
            log.info(
                "webhook_sale",
                tenant_id=tenant_id,
                platform=line.platform,
                order_id=line.order_id,
                new=bool(recorded and recorded.created),
            )


async def _erase_ebay_user(services: GatewayServices, data: dict[str, Any]) -> None:
    """eBay's account deletion: forget that seller's tokens and settings wherever they are connected."""
    for key in {str(data.get(field)) for field in ("username", "userId") if data.get(field)}:
        for tenant_id in await _tenants(services, "ebay", "user", key):
            async with _in_tenant(services, tenant_id) as session:
                await _disconnect_ebay(session, tenant_id)
                await directory.forget(session, "ebay", "user", key)
            log.info("ebay_account_erased", tenant_id=tenant_id, platform="ebay")


async def _disconnect_ebay(session: AsyncSession, tenant_id: int) -> None:
    await credentials.delete_credential(session, "ebay")
    await sale_checks.unschedule(session, "ebay", tenant_id)


@router.post("/ebay", status_code=204, response_class=Response, responses=_SIGNATURE_RESPONSES)
async def ebay_notification(request: Request, services: Services) -> Response:
    """An eBay Notification API push: a sale (`ORDER_CONFIRMATION`) or an account deletion."""
    body = await request.body()
    try:
        header = parse_ebay_signature(request.headers.get("x-ebay-signature"))
        key = await _keyring(request, services).public_key(header.kid)
        verify_ebay_signature(key, header.signature, body)
    except (SignatureRefused, KeyUnknown) as refused:
        raise _invalid_signature(str(refused)) from None
    except KeyUnavailable:
        raise ProblemError(
            503, "unavailable", "eBay's signing key cannot be read now; send it again."
        ) from None
    notification = _json_object(body)
    metadata = notification.get("metadata")
    topic = metadata.get("topic") if isinstance(metadata, dict) else None
    inner = notification.get("notification")
    data = inner.get("data") if isinstance(inner, dict) else None
    if not isinstance(data, dict):
        data = {}
    if topic == "MARKETPLACE_ACCOUNT_DELETION":
        await _erase_ebay_user(services, data)
    elif topic == "ORDER_CONFIRMATION":
        await _record_lines(services, ebay_order_lines(data))
    else:
        log.info("webhook_ignored", platform="ebay", topic=str(topic))
    return Response(status_code=204)


# --- Etsy ----------------------------------------------------------------------------------------------


def _receipt_id(resource_url: object) -> str | None:
    if not isinstance(resource_url, str):
        return None
    last = resource_url.rstrip("/").rsplit("/", 1)[-1]
    return last if last.isdigit() else None


@router.post("/etsy", status_code=204, response_class=Response, responses=_SIGNATURE_RESPONSES)
async def etsy_notification(request: Request, services: Services) -> Response:
    """An Etsy push (`order.paid`): the shop's sale check runs at once and reads the receipt."""
    body = await request.body()
    settings = services.settings
    webhook_id = request.headers.get("webhook-id")
    try:
        verify_etsy_signature(
            settings.etsy_webhook_secret.get_secret_value(),
            webhook_id,
            request.headers.get("webhook-timestamp"),
            request.headers.get("webhook-signature"),
            body,
            now=time.time(),
            tolerance_seconds=settings.webhook_tolerance_seconds,
        )
    except SignatureRefused as refused:
        raise _invalid_signature(str(refused)) from None
    payload = _json_object(body)
    # The same delivery again (Etsy retries, or a replay inside the tolerance) is answered and ignored.
    first = await services.redis.set(
        f"webhook:etsy:{webhook_id}", "1", nx=True, ex=2 * settings.webhook_tolerance_seconds
    )
    if not first:
        log.info("webhook_duplicate", platform="etsy")
        return Response(status_code=204)
    shop_id, receipt = payload.get("shop_id"), _receipt_id(payload.get("resource_url"))
    if payload.get("event_type") != "order.paid" or shop_id is None:
        log.info("webhook_ignored", platform="etsy", event_type=str(payload.get("event_type")))
        return Response(status_code=204)
    for tenant_id in await _tenants(services, "etsy", "shop", str(shop_id)):
        async with _in_tenant(services, tenant_id) as session:
            await sale_checks.check_now(session, "etsy", tenant_id, [receipt] if receipt else [])
        log.info("webhook_sale_check_due", tenant_id=tenant_id, platform="etsy", receipt_id=receipt)
    return Response(status_code=204)
