"""/api/auth: registration, login, refresh rotation with reuse detection, logout, me."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from typing import Literal, NoReturn

import structlog
from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.exc import IntegrityError

from domain.errors import EmailTaken, InvalidCredentials, TenantLimitReached
from gateway.dependencies import PublicSession, Services, SignedIn, UnitOfWorkRoute
from gateway.problems import ProblemError
from gateway.schemas.auth import (
    LoginRequest,
    RefreshRequest,
    RegisterRequest,
    RegisterResponse,
    TokenPair,
    UserOut,
)
from gateway.services import GatewayServices
from gateway.tokens import InvalidToken
from persistence import accounts
from persistence.core_models import User

router = APIRouter(prefix="/api/auth", tags=["auth"], route_class=UnitOfWorkRoute)
log = structlog.get_logger(__name__)

_INVALID_REFRESH = "The refresh token is not valid."


def _user_out(user: User) -> UserOut:
    return UserOut.model_validate(user, from_attributes=True)


async def _issue_pair(
    services: GatewayServices, session: PublicSession, user: User, login_id: uuid.UUID
) -> TokenPair:
    refresh = services.tokens.issue_refresh(user_id=user.id, session_id=login_id)
    await accounts.store_refresh_token(
        session, jti=refresh.jti, session_id=login_id, expires_at=refresh.expires_at
    )
    access = services.tokens.issue_access(
        user_id=user.id, tenant_id=user.tenant_id, role=user.role, session_id=login_id
    )
    return TokenPair(
        access_token=access,
        refresh_token=refresh.token,
        expires_in=int(services.tokens.access_ttl.total_seconds()),
    )


async def _revoke_reused_chain(session: PublicSession, session_id: uuid.UUID, user_id: int) -> NoReturn:
    """A spent refresh token came back: revoke its whole login chain and answer `token_reused`."""
    # The revocation must outlive this failed request: commit it on its own before answering.
    await session.rollback()
    await accounts.revoke_login_chain(session, session_id)
    await session.commit()
    log.warning("refresh_token_reused", user_id=user_id)
    raise ProblemError(401, "token_reused", "This refresh token was already used; please log in again.")


async def _refuse_if_client_limited(request: Request, services: GatewayServices, action: str) -> None:
    """429 `too_many_requests` when this client address has used up its attempts at `action`."""
    peer = request.client.host if request.client else None
    wait = await services.client_limiter.wait_for(action, peer, request.headers.get("x-forwarded-for"))
    if wait:
        log.warning("client_limited", action=action)
        raise ProblemError(
            429,
            "too_many_requests",
            "Too many attempts from this address; try again later.",
            headers={"Retry-After": str(wait)},
        )


@router.post(
    "/register",
    status_code=201,
    responses={
        409: {"description": "email_taken"},
        429: {"description": "too_many_requests: too many registrations from this client address"},
        503: {"description": "tenant_limit_reached"},
    },
)
async def register(
    body: RegisterRequest, request: Request, services: Services, session: PublicSession
) -> RegisterResponse:
    """Create a tenant, its schema and its admin user, all in one transaction."""
    settings = services.settings
    await _refuse_if_client_limited(request, services, "register")
    if await accounts.email_registered(session, body.email):
        raise EmailTaken("An account with this email already exists.", field="email")
    password_hash = await services.passwords.hash(body.password)
    await accounts.lock_registrations(session)
    if await accounts.count_tenants(session) >= settings.tenant_max_schemas:
        log.warning("tenant_limit_reached", limit=settings.tenant_max_schemas)
        raise TenantLimitReached("No new accounts can be opened right now; try again later.")
    if not await accounts.tier_exists(session, settings.default_tier):
        raise RuntimeError(f"DEFAULT_TIER {settings.default_tier!r} is not a subscription tier")
    tenant = await accounts.add_tenant(
        session, name=body.business_name or body.full_name or body.email, tier=settings.default_tier
    )
    await accounts.create_tenant_schema(
        session, settings.tenant_schema_prefix, tenant.id, services.tenant_migrator
    )
    try:
        user = await accounts.add_user(
            session,
            User(
                tenant_id=tenant.id,
                email=body.email,
                password_hash=password_hash,
                full_name=body.full_name,
                business_name=body.business_name,
                account_type=body.account_type,
                language=body.language,
                country=body.country.upper() if body.country else None,
                role="admin",
            ),
        )
    except IntegrityError:
        raise EmailTaken("An account with this email already exists.", field="email") from None
    login = await accounts.start_login_session(session, user.id, "web")
    pair = await _issue_pair(services, session, user, login.id)
    structlog.contextvars.bind_contextvars(tenant_id=tenant.id)
    log.info("tenant_registered", user_id=user.id)
    return RegisterResponse(**pair.model_dump(), user=_user_out(user))


@router.post(
    "/login",
    responses={
        401: {"description": "invalid_credentials"},
        429: {"description": "too_many_attempts (this email), or too_many_requests (this client address)"},
    },
)
async def login(
    body: LoginRequest,
    request: Request,
    services: Services,
    session: PublicSession,
    source: Literal["web", "plugin", "mobile"] = Query("web", description="Which client logs in."),
) -> TokenPair:
    """Exchange email and password for a token pair."""
    await _refuse_if_client_limited(request, services, "login")
    # The attempt is reserved before the password is checked: concurrent guesses cannot outrun the limit.
    attempt = await services.login_throttle.reserve(body.email)
    if not attempt.granted:
        raise ProblemError(
            429,
            "too_many_attempts",
            "Too many failed logins for this email; try again later.",
            headers={"Retry-After": str(attempt.wait)},
        )
    user = await accounts.find_user_by_email(session, body.email)
    valid = await services.passwords.verify(body.password, user.password_hash if user else None)
    if user is None or not valid:
        # The reservation stays: it is the recorded failure. A random pause blurs whatever timing
        # difference is left between the two failure paths.
        await asyncio.sleep(0.1 + secrets.randbelow(200) / 1000)
        raise InvalidCredentials("The email or the password is wrong.")
    await services.login_throttle.succeeded(attempt)
    login_session = await accounts.start_login_session(session, user.id, source)
    return await _issue_pair(services, session, user, login_session.id)


@router.post(
    "/refresh",
    responses={401: {"description": "invalid_token, or token_reused (the whole login chain is revoked)"}},
)
async def refresh(body: RefreshRequest, services: Services, session: PublicSession) -> TokenPair:
    """Spend a refresh token for a new pair; a spent one presented again revokes its whole chain."""
    try:
        claims = services.tokens.decode_refresh(body.refresh_token)
    except InvalidToken:
        raise ProblemError(401, "invalid_token", _INVALID_REFRESH) from None
    token = await accounts.lock_refresh_token(session, claims.jti)
    if token is None or token.session_id != claims.session_id:
        raise ProblemError(401, "invalid_token", _INVALID_REFRESH)
    if token.spent_at is not None:
        await _revoke_reused_chain(session, claims.session_id, claims.user_id)
    if token.revoked_at is not None:
        raise ProblemError(401, "invalid_token", _INVALID_REFRESH)
    user = await accounts.get_user(session, claims.user_id)
    if user is None or not await accounts.login_session_usable(session, claims.session_id, user.id):
        raise ProblemError(401, "invalid_token", _INVALID_REFRESH)
    await accounts.spend_refresh_token(session, token)
    return await _issue_pair(services, session, user, claims.session_id)


@router.post("/logout", status_code=204, response_class=Response)
async def logout(
    body: RefreshRequest, principal: SignedIn, services: Services, session: PublicSession
) -> Response:
    """Revoke a refresh token of the caller."""
    try:
        claims = services.tokens.decode_refresh(body.refresh_token)
    except InvalidToken:
        raise ProblemError(401, "invalid_token", _INVALID_REFRESH) from None
    token = await accounts.lock_refresh_token(session, claims.jti)
    if token is None or claims.user_id != principal.user_id:
        raise ProblemError(401, "invalid_token", _INVALID_REFRESH)
    if token.spent_at is not None:
        await _revoke_reused_chain(session, claims.session_id, claims.user_id)
    await accounts.end_login_session(session, claims.session_id)
    return Response(status_code=204)


@router.get("/me")
async def me(principal: SignedIn, session: PublicSession) -> UserOut:
    """The calling user."""
    user = await accounts.get_user(session, principal.user_id)
    if user is None:
        raise ProblemError(401, "invalid_token", "The access token is not valid.")
    return _user_out(user)
