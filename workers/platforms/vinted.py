"""Vinted through the browser plugin: each publish/update/delist becomes one plugin task.

Vinted has no public API; the user's plugin runs the requests with the user's own session. The worker
maps the product, takes one rate-limit slot per request (40 per 2 h per account, shared by every worker
process), writes the task and leaves the job `waiting_plugin`. When the plugin reports, the job comes back
to this pool and finishes from the recorded result: a Vinted task is never run twice by the plugin, and
a lost task result is never replaced by a second task unless the first one failed.

Request bodies may hold `{"$ref": "responses[i].field"}` (a value from an earlier response of the same
task, e.g. a photo id) and photo uploads carry `$upload: {"field", "url"}` (the image the plugin sends).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import text

from domain.jobs import USER_MESSAGES, JobErrorCode
from domain.mapping.common import truncate_title
from domain.mapping.vinted import TITLE_MAX, map_to_vinted_item, vinted_listing_from
from domain.sales import same_title, vinted_sold_orders, vinted_transaction_lines
from ops.adapters.rate_limit import (
    SlidingWindowLimiter,
    seed_if_missing,
    vinted_member_key,
    vinted_sale_check_key,
)
from persistence import plugin_tasks, queue
from persistence.tenancy import tenant_transaction
from workers.errors import LeaseLost, PermanentPlatformError, RateLimited, TransientPlatformError
from workers.platforms.base import JobInput, ListingOutcome
from workers.platforms.media import image_keys

if TYPE_CHECKING:
    from workers.context import WorkerApp

log = structlog.get_logger(__name__)

ITEM_URL = "https://www.vinted.fr/items/{id}"
#: Seconds before a job retries after Vinted's 429 / an anti-bot challenge (the plugin's own pauses).
RATE_LIMIT_PAUSE = 15 * 60
CHALLENGE_PAUSE = 30 * 60
_CHALLENGE_MARKERS = ("captcha", "datadome", "challenge", "cf-chl", "cloudflare")
#: Items per wardrobe page (Vinted's largest page) and pages per plugin task of an import.
WARDROBE_PAGE_SIZE = 96
WARDROBE_PAGES_PER_TASK = 4
#: Placeholder photo ids: replaced by references to the upload responses before the task is written.
_PLACEHOLDER = 10**12
#: A sale check reads the member's newest sold orders: one request, one slot of the checks' share.
SOLD_ORDERS_PATH = "/api/v2/my_orders?type=sold&page=1&per_page=50"
#: New orders whose transaction one check reads (one request each, within the checks' share).
TRANSACTIONS_PER_CHECK = 5


class VintedAdapter:
    def __init__(self, app: WorkerApp, limiter: SlidingWindowLimiter) -> None:
        self._app = app
        self._limiter = limiter

    async def publish(self, job: JobInput) -> ListingOutcome:
        earlier = await self._earlier_task_outcome(job, creating=True)
        if earlier is not None:
            return earlier
        product = _product(job)
        photos = list(product.image_urls)
        body = map_to_vinted_item(
            product, job.mappings, photo_ids=[_PLACEHOLDER + i for i in range(len(photos))]
        )
        item = body["item"]
        assert isinstance(item, dict)
        item["assigned_photos"] = [
            {"id": {"$ref": f"responses[{index}].id"}, "orientation": 0} for index in range(len(photos))
        ]
        requests: list[dict[str, Any]] = [_photo_upload(url) for url in photos]
        requests.append({"method": "POST", "path": "/api/v2/item_upload/items", "body": body})
        return await self._release(job, "create_item", requests)

    async def update(self, job: JobInput) -> ListingOutcome:
        earlier = await self._earlier_task_outcome(job, creating=False)
        if earlier is not None:
            return earlier
        item_id = _item_id(job)
        product = _product(job)
        data = (job.listing or {}).get("data", {})
        kept = [int(photo) for photo in data.get("photo_ids", [])]
        keys = image_keys(tuple(product.image_urls))
        shown = data.get("images")
        if not isinstance(shown, list):
            shown = keys[: len(kept)]  # pushed before we kept track: take the photos as they were
        # An image still at its rank keeps its Vinted photo; a new or moved one is uploaded first, in the
        # same task (one slot each), and the item names the upload's id.
        uploads: list[dict[str, Any]] = []
        assigned: list[dict[str, Any]] = []
        for rank, (url, key) in enumerate(zip(product.image_urls, keys, strict=True)):
            if rank < len(shown) and rank < len(kept) and shown[rank] == key:
                assigned.append({"id": kept[rank], "orientation": 0})
                continue
            assigned.append({"id": {"$ref": f"responses[{len(uploads)}].id"}, "orientation": 0})
            uploads.append(_photo_upload(url))
        body = map_to_vinted_item(
            product,
            job.mappings,
            photo_ids=[_PLACEHOLDER + i for i in range(len(assigned))],
            item_id=int(item_id),
        )
        item = body["item"]
        assert isinstance(item, dict)
        item["assigned_photos"] = assigned
        requests = [*uploads, {"method": "PUT", "path": f"/api/v2/item_upload/items/{item_id}", "body": body}]
        return await self._release(job, "update_item", requests)

    async def delist(self, job: JobInput) -> ListingOutcome:
        earlier = await self._earlier_task_outcome(job, creating=False)
        if earlier is not None:
            return earlier
        item_id = _item_id(job)
        requests = [{"method": "POST", "path": f"/api/v2/items/{item_id}/delete", "body": None}]
        return await self._release(job, "delete_item", requests)

    async def import_listings(self, job: JobInput) -> ListingOutcome:
        """Read the member's wardrobe through the plugin: page 1 first, then the other pages in one task.

        Each page is one request, one slot of the member's budget: 96 items a page, so 120 items cost 2.
        The pages read are kept with their tasks; a run after each result goes on from there, and the last
        one hands what was found to the runner, which writes it when the job finishes.
        """
        done = [str(task) for task in job.progress.get("import_tasks", [])]
        if job.progress.get("task_id"):
            result = await self._reported_result(job)
            if result is None:
                raise TransientPlatformError("The plugin has not reported the wardrobe page yet.")
            if result.get("status") != "success":
                await self._conclude(job, result, creating=False)  # raises: retried or failed
            done.append(str(job.progress["task_id"]))
            await job.save_progress({"task_id": None, "import_tasks": done})
        pages = await self._wardrobe_pages(job, done)
        member = await self._member_of(job)
        if 1 not in pages:
            return await self._release(job, "list_items", [_wardrobe_request(member, 1)])
        total = max(int(page.get("pagination", {}).get("total_pages") or 1) for page in pages.values())
        missing = [number for number in range(2, total + 1) if number not in pages]
        if missing:
            requests = [_wardrobe_request(member, number) for number in missing[:WARDROBE_PAGES_PER_TASK]]
            return await self._release(job, "list_items", requests)
        found = [
            vinted_listing_from(item)
            for number in sorted(pages)
            for item in pages[number].get("items") or []
            if isinstance(item, dict) and not item.get("is_closed") and not item.get("is_draft")
        ]
        # The pages are read at different moments: only when they agree on the wardrobe's size and hold
        # that many distinct items is an item of ours that is missing from them really gone.
        totals = {int(page.get("pagination", {}).get("total_entries") or 0) for page in pages.values()}
        whole = len(totals) == 1 and len({item.external_id for item in found}) == totals.pop()
        log.info("vinted_wardrobe_read", pages=len(pages), listings=len(found), whole=whole)
        return ListingOutcome(external_id=None, url=None, imported=tuple(found), imported_whole=whole)

    async def check_sales(self, job: JobInput) -> ListingOutcome:
        """A sale check of the member through the plugin, within the checks' share of its budget.

        First task: the newest sold orders (`my_orders`, one request). Orders that are neither recorded
        as sales nor looked at by an earlier check, and whose title is one we list, are read in a second
        task (`transactions/{id}`, one request each): the transaction names the items sold. The runner
        records what was sold when the job finishes, in the same transaction.
        """
        phase = str(job.progress.get("phase") or "orders")
        if job.progress.get("task_id"):
            result = await self._reported_result(job)
            if result is None:
                raise TransientPlatformError("The plugin has not reported the sale check yet.")
            if result.get("status") != "success":
                await self._conclude(job, result, creating=False)  # raises: retried or failed
            bodies: list[dict[str, Any]] = [
                response["body"]
                for response in result.get("responses") or []
                if isinstance(response, dict) and isinstance(response.get("body"), dict)
            ]
            if phase == "transactions":
                lines = tuple(line for body in bodies for line in vinted_transaction_lines(body))
                seen = [str(value) for value in job.progress.get("seen", [])]
                log.info("vinted_sale_check_read", transactions=len(bodies), lines=len(lines))
                return ListingOutcome(None, None, result={"seen": seen}, sales=lines)
            orders = vinted_sold_orders(bodies[-1]) if bodies else []
            to_read, seen = await self._orders_to_read(job, orders)
            if not to_read:
                return ListingOutcome(None, None, result={"seen": seen}, sales=())
            await job.save_progress(
                {"task_id": None, "phase": "transactions", "transactions": to_read, "seen": seen}
            )
            phase = "transactions"
        if phase == "transactions":
            wanted = [str(value) for value in job.progress.get("transactions", [])]
            requests = [
                {"method": "GET", "path": f"/api/v2/transactions/{transaction}", "body": None}
                for transaction in wanted
            ]
        else:
            requests = [{"method": "GET", "path": SOLD_ORDERS_PATH, "body": None}]
        return await self._release(job, plugin_tasks.SALE_CHECK_OPERATION, requests, sale_check=True)

    async def _orders_to_read(self, job: JobInput, orders: list[Any]) -> tuple[list[str], list[str]]:
        """(transactions to read now, transactions this check saw): the orders not yet recorded nor read
        by an earlier check whose title is one of ours; at most TRANSACTIONS_PER_CHECK, within the share."""
        app = self._app
        account_id = job.payload.get("vinted_account_id")
        ids = [order.transaction_id for order in orders]
        async with tenant_transaction(
            app.db.session_factory, app.settings.tenant_schema_prefix, job.tenant_id
        ) as session:
            recorded = {
                str(row[0])
                for row in await session.execute(
                    text(
                        "SELECT split_part(order_id, '/', 1) FROM sales WHERE platform = 'vinted' "
                        "AND split_part(order_id, '/', 1) = ANY(:ids)"
                    ),
                    {"ids": ids},
                )
            }
            earlier = await session.scalar(
                text(
                    "SELECT result -> 'seen' FROM plugin_queue WHERE platform = 'vinted' "
                    "AND action = 'check_sales' AND status = 'succeeded' "
                    "AND (payload ->> 'vinted_account_id')::bigint = :account "
                    "ORDER BY updated_at DESC LIMIT 1"
                ),
                {"account": account_id},
            )
            titles = [
                truncate_title(str(row[0]), TITLE_MAX)
                for row in await session.execute(
                    text(
                        "SELECT p.title FROM platform_listings AS l "
                        "JOIN products AS p ON p.id = l.product_id "
                        "WHERE l.platform = 'vinted' AND l.status IN ('live', 'pending') "
                        "AND l.vinted_account_id = :account"
                    ),
                    {"account": account_id},
                )
            ]
        looked_at = {str(value) for value in earlier} if isinstance(earlier, list) else set()
        ours = [
            order.transaction_id
            for order in orders
            if order.transaction_id not in recorded
            and order.transaction_id not in looked_at
            and any(same_title(order.title, title) for title in titles)
        ]
        share = max(self._app.settings.vinted_sale_check_share - 1, 1)
        to_read = ours[: min(TRANSACTIONS_PER_CHECK, share)]
        # What this check saw: every order it read whose outcome is settled (recorded, not ours, or read
        # now); an order left for a later check (past the cap) is not marked seen.
        seen = [order.transaction_id for order in orders if order.transaction_id not in ours[len(to_read) :]]
        return to_read, seen

    async def _wardrobe_pages(self, job: JobInput, task_ids: list[str]) -> dict[int, dict[str, Any]]:
        """The wardrobe pages the plugin read for this job so far, by page number."""
        app = self._app
        pages: dict[int, dict[str, Any]] = {}
        async with tenant_transaction(
            app.db.session_factory, app.settings.tenant_schema_prefix, job.tenant_id
        ) as session:
            for task_id in task_ids:
                task = await plugin_tasks.get_task(session, uuid.UUID(task_id))
                responses = (task.result or {}).get("responses") if task is not None else None
                for response in responses if isinstance(responses, list) else []:
                    body = response.get("body") if isinstance(response, dict) else None
                    pagination = body.get("pagination") if isinstance(body, dict) else None
                    if isinstance(body, dict) and isinstance(pagination, dict):
                        pages[int(pagination.get("current_page") or 1)] = body
        return pages

    async def _member_of(self, job: JobInput) -> str:
        account_id = job.payload.get("vinted_account_id")
        app = self._app
        async with tenant_transaction(
            app.db.session_factory, app.settings.tenant_schema_prefix, job.tenant_id
        ) as session:
            member = await session.scalar(
                text("SELECT vinted_user_id FROM vinted_accounts WHERE id = :id"), {"id": account_id}
            )
        if member is None:
            raise PermanentPlatformError(JobErrorCode.NOT_CONNECTED, "The Vinted account was disconnected.")
        return str(member)

    async def _earlier_task_outcome(self, job: JobInput, *, creating: bool) -> ListingOutcome | None:
        """The outcome of this job's task released by an earlier run, or None when a new one is needed."""
        finished = await self._reported_result(job)
        if finished is not None:
            return await self._conclude(job, finished, creating=creating)
        if creating and job.product_gone:
            # Nothing of this publish is on Vinted (no task result says so): start nothing new.
            raise PermanentPlatformError(
                JobErrorCode.PRODUCT_CHANGED, USER_MESSAGES[JobErrorCode.PRODUCT_CHANGED]
            )
        return None

    async def _release(
        self,
        job: JobInput,
        operation: str,
        requests: list[dict[str, Any]],
        *,
        sale_check: bool = False,
    ) -> ListingOutcome:
        """Take a slot per request of the member's budget, then write the task and park the job together.

        A sale check takes its slots within the checks' share, and only while the member's waiting
        publish/update/delist jobs still fit in the window after it (one atomic decision in Redis).
        """
        account_id = job.payload.get("vinted_account_id")
        if not isinstance(account_id, int):
            raise PermanentPlatformError("platform_not_connected", "The job names no Vinted account.")
        assert job.lease is not None
        app = self._app
        window = self._limiter.window_seconds
        async with tenant_transaction(
            app.db.session_factory, app.settings.tenant_schema_prefix, job.tenant_id
        ) as session:
            member = await session.scalar(
                text("SELECT vinted_user_id FROM vinted_accounts WHERE id = :id"), {"id": account_id}
            )
            if member is None:
                raise PermanentPlatformError(
                    JobErrorCode.NOT_CONNECTED, "The Vinted account was disconnected."
                )
            releases = await plugin_tasks.member_releases(session, str(member), window)
            if sale_check:
                check_releases = await plugin_tasks.member_releases(
                    session, str(member), window, sale_checks_only=True
                )
                reserve = await plugin_tasks.waiting_publication_slots(session, str(member))
        key = vinted_member_key(str(member))
        # Redis may have lost the member's log (flush, restart): rebuild it from PostgreSQL first.
        await seed_if_missing(app.redis, key, releases, window_seconds=window)
        if sale_check:
            share_key = vinted_sale_check_key(str(member))
            await seed_if_missing(app.redis, share_key, check_releases, window_seconds=window)
            reservation = await self._limiter.acquire_within_share(
                key, share_key, len(requests), share=app.settings.vinted_sale_check_share, reserve=reserve
            )
        else:
            reservation = await self._limiter.acquire(key, len(requests))
        if not reservation.granted:
            assert reservation.available_at is not None
            raise RateLimited(
                f"The Vinted member's request budget is spent until {reservation.available_at.isoformat()}.",
                available_at=reservation.available_at,
            )
        async with tenant_transaction(
            app.db.session_factory, app.settings.tenant_schema_prefix, job.tenant_id
        ) as session:
            task = await plugin_tasks.create_task(
                session,
                tenant_id=job.tenant_id,
                job_id=job.job_id,
                vinted_account_id=account_id,
                vinted_user_id=str(member),
                operation=operation,
                requests=requests,
            )
            # Parked in the same transaction: the plugin cannot see the task before the job waits for it.
            if not await queue.park_for_plugin(session, job.tenant_id, job.lease, task.id):
                raise LeaseLost()
        log.info("plugin_task_released", task_id=str(task.id), operation=operation, slots=len(requests))
        return ListingOutcome(external_id=None, url=None, waiting_plugin=True)

    async def _reported_result(self, job: JobInput) -> dict[str, Any] | None:
        task_id = job.progress.get("task_id")
        if not task_id:
            return None
        app = self._app
        async with tenant_transaction(
            app.db.session_factory, app.settings.tenant_schema_prefix, job.tenant_id
        ) as session:
            task = await plugin_tasks.get_task(session, uuid.UUID(str(task_id)))
        if task is None or task.result is None:
            return None
        return dict(task.result)

    async def _conclude(self, job: JobInput, result: dict[str, Any], *, creating: bool) -> ListingOutcome:
        raw = result.get("responses")
        responses = (
            [response for response in raw if isinstance(response, dict)] if isinstance(raw, list) else []
        )
        if result.get("status") == "success":
            keys = image_keys(tuple(job.product.image_urls)) if job.product is not None else []
            if not creating:
                listing = job.listing or {}
                photo_ids = _item_photo_ids(responses)
                data = (
                    {"photo_ids": photo_ids, "images": keys}
                    if photo_ids is not None and job.action == "update"
                    else {}
                )
                return ListingOutcome(
                    external_id=listing.get("external_id"), url=listing.get("url"), data=data
                )
            created = _created_listing(responses)
            return ListingOutcome(created.external_id, created.url, {**created.data, "images": keys})
        last = responses[-1] if responses else {"http_status": 0, "body": None}
        status = _http_status(last.get("http_status"))
        message = _vinted_message(last.get("body"), result.get("error"))
        challenged = status == 403 and _is_challenge(last.get("body"))
        if status == 0 or status == 429 or status >= 500 or challenged:
            # This task is spent; the next run writes a new one (after the runner's backoff).
            await job.save_progress(
                {
                    "task_id": None,
                    "spent_tasks": [*job.progress.get("spent_tasks", []), job.progress.get("task_id")],
                }
            )
            # After a 429 or a challenge the plugin pauses the account itself; releasing a new task before
            # then would only spend slots of the account's budget on a task nobody runs.
            pause = RATE_LIMIT_PAUSE if status == 429 else CHALLENGE_PAUSE if challenged else None
            raise TransientPlatformError(f"Vinted answered {status}: {message}", retry_after=pause)
        raise PermanentPlatformError("platform_rejected", message)


def _product(job: JobInput) -> Any:
    if job.product is None:
        raise PermanentPlatformError("platform_rejected", "The product no longer exists.")
    return job.product


def _item_id(job: JobInput) -> str:
    external = (job.listing or {}).get("external_id")
    if not external:
        raise PermanentPlatformError("not_listed", "The product has no Vinted item to change.")
    return str(external)


def _wardrobe_request(member: str, page: int) -> dict[str, Any]:
    """One page of a member's wardrobe, newest first, as Vinted's web app asks for it."""
    path = f"/api/v2/wardrobe/{member}/items?page={page}&per_page={WARDROBE_PAGE_SIZE}&order=newest_first"
    return {"method": "GET", "path": path, "body": None}


def _photo_upload(url: str) -> dict[str, Any]:
    """The request that uploads one of our images as a Vinted item photo (the plugin sends the file)."""
    return {
        "method": "POST",
        "path": "/api/v2/photos",
        "body": {
            "photo": {"type": "item", "temp_uuid": str(uuid.uuid4())},
            "$upload": {"field": "photo[file]", "url": url},
        },
    }


def _item_photo_ids(responses: list[dict[str, Any]]) -> list[int] | None:
    """The photo ids of the item Vinted answered with (an edit's answer), in order; None when absent."""
    body = responses[-1].get("body") if responses else None
    item = body.get("item") if isinstance(body, dict) else None
    photos = item.get("photos") if isinstance(item, dict) else None
    if not isinstance(photos, list):
        return None
    ids = [photo.get("id") for photo in photos if isinstance(photo, dict)]
    return [int(photo_id) for photo_id in ids if isinstance(photo_id, int)]


def _created_listing(responses: list[dict[str, Any]]) -> ListingOutcome:
    """Read the item id as Vinted returns it (`{"item": {"id": ...}}`) from the create response."""
    body = responses[-1].get("body") if responses else None
    item = body.get("item") if isinstance(body, dict) else None
    item_id = item.get("id") if isinstance(item, dict) else None
    if item_id is None:
        raise PermanentPlatformError("platform_rejected", "Vinted's create response carries no item id.")
    url = item.get("url") if isinstance(item, dict) and isinstance(item.get("url"), str) else None
    photo_ids = [
        response["body"]["id"]
        for response in responses[:-1]
        if isinstance(response.get("body"), dict) and "id" in response["body"]
    ]
    return ListingOutcome(
        external_id=str(item_id), url=url or ITEM_URL.format(id=item_id), data={"photo_ids": photo_ids}
    )


def _http_status(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _is_challenge(body: Any) -> bool:
    text = str(body).lower()
    return any(marker in text for marker in _CHALLENGE_MARKERS)


def _vinted_message(body: Any, error: Any) -> str:
    """Vinted's own words for a refusal, read from whatever shape the body has (never raises)."""
    parts: list[str] = []
    if isinstance(body, dict):
        for field in ("message", "message_code", "error", "error_description"):
            value = body.get(field)
            if isinstance(value, str | int | float) and str(value).strip():
                parts.append(str(value))
                break
        entries = body.get("errors")
        if isinstance(entries, list):
            for entry in entries[:10]:
                if isinstance(entry, dict):
                    parts.append(f"{entry.get('field')}: {entry.get('value') or entry.get('message')}")
                elif isinstance(entry, str):
                    parts.append(entry)
    if not parts and isinstance(error, dict) and isinstance(error.get("message"), str):
        parts.append(error["message"])
    if not parts and body:
        parts.append(str(body))
    text = "; ".join(part for part in parts if part) or "Vinted refused the request without a message."
    return text[:500]
