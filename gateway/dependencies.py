"""Request-scoped dependencies: the unit of work, the caller, and the tenant-scoped session.

`UnitOfWorkRoute` owns the transaction of every `/api` request: it opens one session, runs the handler,
commits when the answer is a success and rolls back otherwise, and applies `Idempotency-Key`. Handlers
only flush. Tenant scoping happens in exactly one place, `tenant_session`.

A hot command may also have a raw-pool path (`raw_path`): tried first, in one asyncpg transaction on the
gateway's raw pool (`raw_transaction`, same deadlock retry), it answers the common case itself and hands
everything else (`UseUnitOfWork`) to the unit of work, which then decides the request from the start.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import asyncpg
import structlog
from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import idempotency
from gateway.problems import ProblemError
from gateway.request_input import StrictJsonRequest, check_request_input, opaque_paths_of
from gateway.services import GatewayServices
from gateway.tokens import OPERATOR_ROLE, AccessClaims, InvalidToken
from persistence.accounts import access_role
from persistence.tenancy import scope_to_tenant, tenant_schema

log = structlog.get_logger(__name__)

#: The challenge every 401 carries.
BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_BEARER = BEARER_CHALLENGE


async def services_of(request: Request) -> GatewayServices:
    services: GatewayServices = request.app.state.services
    return services


Services = Annotated[GatewayServices, Depends(services_of)]


async def request_session(request: Request) -> AsyncSession:
    """The unit of work's session (public schema; see `tenant_session` for tenant data)."""
    session: AsyncSession = request.state.session
    return session


PublicSession = Annotated[AsyncSession, Depends(request_session)]


@dataclass(frozen=True)
class Principal:
    user_id: int
    tenant_id: int
    role: str


def bearer_token(request: Request) -> str:
    """The request's Bearer token; 401 `not_authenticated` without one."""
    header = request.headers.get("Authorization")
    if header is None:
        raise ProblemError(401, "not_authenticated", "Authentication required.", headers=_BEARER)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ProblemError(401, "not_authenticated", "A Bearer token is required.", headers=_BEARER)
    return token.strip()


async def claims_of(
    token: str, services: GatewayServices, session: AsyncSession, *, scope: bool = False
) -> AccessClaims:
    """Verify an access token, then its user, tenant and live login in the one query per request.

    A valid signature is not enough: the token's user must belong to the tenant it names (an operator to
    none), and its login must be neither ended (logout) nor compromised (a reused refresh token). 401
    `invalid_token` otherwise. `scope`: a tenant's live login also scopes the session's transaction to its
    tenant schema in that query (see `tenant_session`).
    """
    try:
        claims = services.tokens.decode_access(token)
    except InvalidToken:
        raise ProblemError(401, "invalid_token", "The access token is not valid.", headers=_BEARER) from None
    schema = (
        tenant_schema(services.settings.tenant_schema_prefix, claims.tenant_id)
        if scope and claims.tenant_id is not None
        else None
    )
    role = await access_role(
        session,
        session_id=claims.session_id,
        user_id=claims.user_id,
        tenant_id=claims.tenant_id,
        scope_to=schema,
    )
    if role is None:
        raise ProblemError(401, "invalid_token", "The access token was revoked.", headers=_BEARER)
    return dataclasses.replace(claims, role=role)


async def _authenticate(request: Request, services: GatewayServices, session: AsyncSession) -> AccessClaims:
    """The request's checked claims, verified once per request (idempotency and the route share them).

    A tenant's request is scoped to its schema by the same statement (`request.state.scoped_tenant`).
    """
    cached: AccessClaims | None = getattr(request.state, "claims", None)
    if cached is not None:
        return cached
    claims = await claims_of(bearer_token(request), services, session, scope=True)
    request.state.claims = claims
    request.state.scoped_tenant = claims.tenant_id
    return claims


async def signed_in(request: Request) -> AccessClaims:
    """The claims of a valid, unrevoked access token: a tenant's user or an operator."""
    # The services and the session straight from the request: two dependencies less to solve per request.
    services: GatewayServices = request.app.state.services
    claims = await _authenticate(request, services, request.state.session)
    if claims.tenant_id is not None:
        structlog.contextvars.bind_contextvars(tenant_id=claims.tenant_id)
    structlog.contextvars.bind_contextvars(user_id=claims.user_id)
    return claims


SignedIn = Annotated[AccessClaims, Depends(signed_in)]


async def current_principal(claims: SignedIn) -> Principal:
    """A tenant's user; an operator's token is refused on tenant routes."""
    if claims.tenant_id is None:
        raise ProblemError(403, "forbidden", "Operator accounts cannot use tenant routes.")
    return Principal(user_id=claims.user_id, tenant_id=claims.tenant_id, role=claims.role)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


@dataclass(frozen=True)
class Operator:
    user_id: int


async def require_operator(claims: SignedIn) -> Operator:
    """An operator; a tenant's token is refused on operator routes."""
    if claims.role != OPERATOR_ROLE:
        raise ProblemError(403, "forbidden", "This route is for operators.")
    return Operator(user_id=claims.user_id)


CurrentOperator = Annotated[Operator, Depends(require_operator)]


async def tenant_session(principal: CurrentPrincipal, request: Request) -> AsyncSession:
    """The unit of work's session, scoped to the caller's tenant schema for the rest of the request.

    The authentication's statement already scoped it when the login was checked in this transaction.
    """
    session: AsyncSession = request.state.session
    if getattr(request.state, "scoped_tenant", None) != principal.tenant_id:
        services: GatewayServices = request.app.state.services
        prefix = services.settings.tenant_schema_prefix
        await scope_to_tenant(session, tenant_schema(prefix, principal.tenant_id))
    return session


TenantSession = Annotated[AsyncSession, Depends(tenant_session)]


async def _idempotency_tenant(
    request: Request, services: GatewayServices, session: AsyncSession
) -> int | None:
    """The caller's tenant when the token is valid and live, or None (the handler will then answer 401)."""
    try:
        return (await _authenticate(request, services, session)).tenant_id
    except ProblemError:
        return None


#: A command's raw-pool path: its answer, or None to let the unit of work answer the request.
RawPath = Callable[[StrictJsonRequest, GatewayServices], Awaitable[Response | None]]
_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])


def raw_path(path: RawPath) -> Callable[[_Endpoint], _Endpoint]:
    """Give an endpoint a raw-pool path, tried before the unit of work (see the module docstring)."""

    def mark(endpoint: _Endpoint) -> _Endpoint:
        endpoint.raw_path = path  # type: ignore[attr-defined]
        return endpoint

    return mark


class UnitOfWorkRoute(APIRoute):
    """One transaction per request, committed in one place."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        opaque = opaque_paths_of(self.endpoint)
        fast: RawPath | None = getattr(self.endpoint, "raw_path", None)

        async def run_in_unit_of_work(plain_request: Request) -> Response:
            request = StrictJsonRequest(plain_request.scope, plain_request.receive)
            request.opaque = opaque
            await check_request_input(request)
            services: GatewayServices = request.app.state.services
            try:
                if fast is not None:
                    answer = await fast(request, services)
                    if answer is not None:
                        return answer
                for attempt in range(1, UNIT_OF_WORK_ATTEMPTS + 1):
                    try:
                        return await _one_transaction(request, services, handler)
                    except DBAPIError as error:
                        # A deadlock or serialization failure rolled the whole transaction back, so the
                        # request can run again from the start; PostgreSQL picks one victim per cycle.
                        if attempt == UNIT_OF_WORK_ATTEMPTS or not _is_retryable(error):
                            raise
                        log.info("unit_of_work_retried", attempt=attempt, sqlstate=_sqlstate(error))
                raise AssertionError("unreachable")  # pragma: no cover
            finally:
                # A replayed upload never reaches FastAPI's handler, which would close the parsed form.
                await request.close()

        return run_in_unit_of_work


class UseUnitOfWork(Exception):
    """Raised in a raw-pool path: roll back, and let the unit of work answer this request instead."""


_T = TypeVar("_T")
#: Seconds to wait for a raw connection, as the session pool's `pool_timeout`.
RAW_POOL_TIMEOUT = 10

# The raw pool cannot serve now (connection refused or lost, too many clients, server shutting down): the
# unit of work then answers, 503 through the problem handlers if PostgreSQL really is unavailable.
_RAW_POOL_UNAVAILABLE = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.OperatorInterventionError,
)


async def raw_transaction(services: GatewayServices, work: Callable[[Any], Awaitable[_T]]) -> _T | None:
    """Run `work(connection)` in one transaction on the raw pool; None when the unit of work must answer.

    The unit of work's rules: committed when `work` returns, rolled back when it raises; run again from
    the start when PostgreSQL aborted it as a deadlock victim or a serialization failure.
    """
    for attempt in range(1, UNIT_OF_WORK_ATTEMPTS + 1):
        try:
            async with (
                services.raw_pool.acquire(timeout=RAW_POOL_TIMEOUT) as connection,
                connection.transaction(),
            ):
                return await work(connection)
        except UseUnitOfWork:
            return None
        except asyncpg.PostgresError as error:
            if attempt == UNIT_OF_WORK_ATTEMPTS or error.sqlstate not in _RETRYABLE_SQLSTATES:
                if isinstance(error, _RAW_POOL_UNAVAILABLE):
                    return None
                raise
            log.info("unit_of_work_retried", attempt=attempt, sqlstate=error.sqlstate)
        except _RAW_POOL_UNAVAILABLE:
            return None
    raise AssertionError("unreachable")  # pragma: no cover


#: How many times a request runs when PostgreSQL aborts its transaction as a deadlock victim.
UNIT_OF_WORK_ATTEMPTS = 3
#: Deadlock detected, serialization failure: the transaction was rolled back whole and may be rerun.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def _sqlstate(error: DBAPIError) -> str | None:
    code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return code if isinstance(code, str) else None


def _is_retryable(error: DBAPIError) -> bool:
    return _sqlstate(error) in _RETRYABLE_SQLSTATES


async def _one_transaction(
    request: StrictJsonRequest,
    services: GatewayServices,
    handler: Callable[[Request], Awaitable[Response]],
) -> Response:
    async with services.db.session_factory() as session:
        request.state.session = session
        # A new transaction: whatever scoped the previous attempt's is gone with it.
        request.state.scoped_tenant = None
        try:
            response = await _run_idempotent(request, services, session, handler)
            if response.status_code < 400:
                await session.commit()
            else:
                await session.rollback()
            return response
        except BaseException:
            await session.rollback()
            raise


async def _run_idempotent(
    request: Request,
    services: GatewayServices,
    session: AsyncSession,
    handler: Callable[[Request], Awaitable[Response]],
) -> Response:
    raw_key = request.headers.get(idempotency.HEADER)
    if raw_key is None or request.method not in idempotency.MUTATING_METHODS:
        return await handler(request)
    key = idempotency.parse_key(raw_key)
    # Authenticated before a replay: a revoked token must not get the stored answer back.
    tenant_id = await _idempotency_tenant(request, services, session)
    if tenant_id is None:
        return await handler(request)
    scope = idempotency.IdempotencyScope(
        tenant_id=tenant_id,
        method=request.method,
        path=request.url.path,
        key=key,
        fingerprint=await idempotency.request_fingerprint(request),
    )
    await idempotency.lock_key(session, scope)
    replay = await idempotency.find_replay(session, scope)
    if replay is not None:
        return replay
    response = await handler(request)
    if 200 <= response.status_code < 300:
        await idempotency.remember(session, scope, response)
    return response
