"""What the publish rules read, in one statement that also locks the product (tenant schema + public).

The publish command is the gateway's hot path: its reads were one statement per rule, each a round trip
through SQLAlchemy. Here they are one statement on the asyncpg connection under the request's session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from domain.lifecycle import LifecycleState, ProductStatus
from persistence.database import driver_connection


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
_LOCK_AND_READ = """
SELECT p.id, p.status, p.stock_quantity, p.published_at, p.sold_at,
       ARRAY(SELECT platform::text FROM marketplace_credentials) AS credentials,
       ARRAY(SELECT id FROM vinted_accounts ORDER BY id LIMIT 2) AS vinted_accounts,
       ($2::int IS NOT NULL AND EXISTS (SELECT 1 FROM vinted_accounts WHERE id = $2::int)) AS named_exists,
       coalesce((SELECT q.max_platforms FROM public.tenants AS t
                 JOIN public.subscription_quotas AS q ON q.tier = t.tier WHERE t.id = $3), 0)
           AS max_platforms,
       now() AS now
FROM products AS p
WHERE p.id = $1 AND p.deleted_at IS NULL
FOR UPDATE OF p
"""


async def lock_publication_facts(
    session: AsyncSession, tenant_id: int, product_id: int, vinted_account_id: int | None
) -> PublicationFacts | None:
    """Lock the live product and read what the publish rules need; None when there is no such product."""
    row = await (await driver_connection(session)).fetchrow(
        _LOCK_AND_READ, product_id, vinted_account_id, tenant_id
    )
    if row is None:
        return None
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
