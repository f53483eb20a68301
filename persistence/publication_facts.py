"""What the publish rules read, in one statement that also locks the product (tenant schema + public).

The publish command is the gateway's hot path: its reads were one statement per rule, each a round trip
through SQLAlchemy. Here they are one statement on the asyncpg connection under the request's session, or,
on the gateway's raw pool, one statement that also checks the caller's login first (`lock_for_login`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domain.lifecycle import LifecycleState, ProductStatus
from persistence.database import driver_connection
from persistence.tenancy import in_schema


@dataclass(frozen=True)
class PublicationFacts:
    """A live product (its row locked until commit) and what its tenant has connected and may use."""

    product_id: int
    lifecycle: LifecycleState
    #: eBay/Etsy by their credentials, Vinted by at least one account
    connected: frozenset[str]
    #: the tenant's first two Vinted accounts by id (two are enough to know a choice is needed)
    vinted_accounts: tuple[int, ...]
    #: the Vinted account the caller named exists (False when none was named)
    named_account_exists: bool
    #: the tier's `max_platforms`
    max_platforms: int
    #: the transaction's `now()`
    now: datetime


# The product first (FOR UPDATE OF p); the tenant's connections and tier come along in the same statement.
# Written with `{schema}.` before every tenant table: the session's form drops it (its transaction's
# search_path names the tenant), the raw pool's form names the schema (no `SET LOCAL` needed).
_PRODUCT_FACTS = """
SELECT p.id, p.status, p.stock_quantity, p.published_at, p.sold_at,
       ARRAY(SELECT platform::text FROM {schema}.marketplace_credentials) AS credentials,
       ARRAY(SELECT id FROM {schema}.vinted_accounts ORDER BY id LIMIT 2) AS vinted_accounts,
       ($2::int IS NOT NULL AND EXISTS (SELECT 1 FROM {schema}.vinted_accounts WHERE id = $2::int))
           AS named_exists,
       coalesce((SELECT q.max_platforms FROM public.tenants AS t
                 JOIN public.subscription_quotas AS q ON q.tier = t.tier WHERE t.id = $3), 0)
           AS max_platforms,
       now() AS now
FROM {schema}.products AS p
WHERE p.id = $1 AND p.deleted_at IS NULL
FOR UPDATE OF p
"""
_LOCK_AND_READ = _PRODUCT_FACTS.replace("{schema}.", "")

# The same facts behind the access token's login check (as `persistence.accounts.access_role`): no row
# when the login is not live (the product is then not locked either); a row with a NULL product when the
# login is live and the product is not.
_LOGIN_THEN_FACTS = (
    """
SELECT login.role, facts.*
FROM (SELECT u.role FROM public.users AS u JOIN public.login_sessions AS s ON s.user_id = u.id
      WHERE s.id = $4 AND u.id = $5 AND u.tenant_id = $3::bigint
        AND s.compromised_at IS NULL AND s.ended_at IS NULL) AS login
LEFT JOIN LATERAL ("""
    + _PRODUCT_FACTS
    + """) AS facts ON true
"""
)


async def lock_publication_facts(
    session: AsyncSession, tenant_id: int, product_id: int, vinted_account_id: int | None
) -> PublicationFacts | None:
    """Lock the live product and read what the publish rules need; None when there is no such product."""
    row = await (await driver_connection(session)).fetchrow(
        _LOCK_AND_READ, product_id, vinted_account_id, tenant_id
    )
    return None if row is None else _facts_of(row)


@dataclass(frozen=True)
class LoginFacts:
    """The role of a live login and, when its tenant has that live product, the product's facts."""

    role: str
    facts: PublicationFacts | None


async def lock_for_login(
    connection: Any,
    schema: str,
    *,
    tenant_id: int,
    product_id: int,
    vinted_account_id: int | None,
    session_id: uuid.UUID,
    user_id: int,
) -> LoginFacts | None:
    """On a raw asyncpg connection in a transaction: check the login, then lock the product and read
    what the publish rules need, in one round trip. None when the login is not live (ended, compromised,
    or not this tenant's user)."""
    row = await connection.fetchrow(
        in_schema(_LOGIN_THEN_FACTS, schema), product_id, vinted_account_id, tenant_id, session_id, user_id
    )
    if row is None:
        return None
    return LoginFacts(role=str(row["role"]), facts=None if row["id"] is None else _facts_of(row))


def _facts_of(row: Any) -> PublicationFacts:
    accounts = tuple(int(account) for account in row["vinted_accounts"])
    connected = set(row["credentials"]) | ({"vinted"} if accounts else set())
    return PublicationFacts(
        product_id=int(row["id"]),
        lifecycle=LifecycleState(
            status=ProductStatus(row["status"]),
            stock_quantity=int(row["stock_quantity"]),
            deleted=False,
            published_at=row["published_at"],
            sold_at=row["sold_at"],
        ),
        connected=frozenset(connected),
        vinted_accounts=accounts,
        named_account_exists=bool(row["named_exists"]),
        max_platforms=int(row["max_platforms"]),
        now=row["now"],
    )
