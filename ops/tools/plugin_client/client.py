"""The reference plugin: drain the tenant's Vinted task queue with the member's Vinted sessions.

    poll  GET /api/plugin/tasks?wait=25&limit=n  ──▶ one queue (and one worker) per Vinted account
    each account runs its tasks one at a time, its requests spaced by a jittered gap, and backs off
    after a 429 or an anti-bot challenge; every task is remembered on disk before its first request,
    so a task handed out again is re-reported, never re-run; a background loop heartbeats the leases.

Vinted counts an account's requests when they arrive, not when Stoflow released them: a plugin that lags
(slow, or closed for a while) would otherwise send several windows' worth in one burst. So each account
also keeps a sliding log of its own sends on disk, and a request waits while the last window (the
account's limit and window as Stoflow's rate-limit endpoint gives them) already holds `limit` sends. A
task starts only once the window has room for all its requests; its leases are heartbeated meanwhile.

While any account backs off the client claims nothing (claims are tenant-wide) and lets the leases of
that account's tasks that have not started lapse, so they go back to the queue untouched.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import structlog

from ops.tools.plugin_client.api import StoflowApi, problem_code
from ops.tools.plugin_client.errors import ImageUnavailable, LoginFailed, UnresolvedReference
from ops.tools.plugin_client.memory import AccountBackoff, TaskMemory, state_file_for
from ops.tools.plugin_client.rules import (
    BackoffPolicy,
    GapRange,
    SendWindow,
    UploadSpec,
    choose_send_window,
    interrupted_result,
    is_success,
    judge,
    prepare_request,
    send_window_from,
)
from ops.tools.plugin_client.vinted import Exchange, Pacing, Upload, VintedAccountSession

log = structlog.get_logger(__name__)

DEFAULT_VINTED_URL = "http://127.0.0.1:8900"
DEFAULT_STATE_DIR = Path(".stoflow") / "plugin"
DEFAULT_WRITE_GAP = GapRange(5, 12)
DEFAULT_READ_GAP = GapRange(3, 8)
DEFAULT_BACKOFF = BackoffPolicy()


@dataclass(frozen=True)
class PluginClientConfig:
    """Everything the plugin client needs; only the login is required."""

    api_url: str
    email: str
    password: str = field(repr=False)
    vinted_url: str = DEFAULT_VINTED_URL
    state_dir: Path = DEFAULT_STATE_DIR
    write_gap: GapRange = DEFAULT_WRITE_GAP
    read_gap: GapRange = DEFAULT_READ_GAP
    backoff: BackoffPolicy = DEFAULT_BACKOFF
    #: log members in through the sandbox's `/_sandbox/vinted/sessions` before opening the home page
    sandbox_login: bool = False
    #: cookies of a logged-in browser, per Vinted user id (what a real browser already holds)
    vinted_cookies: Mapping[str, Mapping[str, str]] = field(default_factory=dict, repr=False)
    poll_wait: int = 25
    poll_limit: int = 10
    heartbeat_seconds: float = 20.0
    request_timeout: float = 30.0
    #: tries to deliver one result before leaving it for the next hand-out (or the next start)
    report_attempts: int = 6
    retry_seconds: float = 1.0
    #: override the Vinted requests per window that Stoflow's rate-limit endpoint gives (tests)
    vinted_limit: int | None = None
    #: override the length of that window, seconds (tests)
    vinted_window: float | None = None


@dataclass
class RunSummary:
    """What one `run` did."""

    ran: int = 0  #: tasks run against Vinted
    re_reported: int = 0  #: tasks handed out again that had run already: their stored result was sent
    recovered: int = 0  #: unreported results from an earlier run sent at start
    released: int = 0  #: claimed tasks left unstarted (account backing off, lease lost) for a later claim
    reported: int = 0  #: results Stoflow accepted
    deferred: int = 0  #: results that could not be delivered now (kept on disk, sent again later)

    @property
    def handled(self) -> int:
        return self.ran + self.re_reported


@dataclass(frozen=True)
class Task:
    """A claimed task, as GET /api/plugin/tasks hands it out."""

    id: str
    job_id: str
    vinted_account_id: int
    vinted_user_id: str | None
    #: `create_item`, `update_item`, `delete_item`, `list_items` (wardrobe pages) or `list_sold_orders` (a
    #: sale check: the sold orders, then the new orders' transactions). Every kind runs the same way.
    operation: str
    requests: list[dict[str, Any]]
    lease_id: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Task:
        user = data.get("vinted_user_id")
        return cls(
            id=str(data["id"]),
            job_id=str(data["job_id"]),
            vinted_account_id=int(data["vinted_account_id"]),
            vinted_user_id=str(user) if user is not None else None,
            operation=str(data["operation"]),
            requests=[dict(request) for request in data["requests"]],
            lease_id=str(data["lease_id"]),
        )


@dataclass
class _Held:
    task: Task
    started: bool = False
    lease_lost: bool = False


class _AccountSends:
    """The send gate of one Vinted account: no request while its last window holds `limit` sends."""

    def __init__(self, client: PluginClient, account_id: int) -> None:
        self._client = client
        self._account_id = account_id

    async def before_send(self) -> float:
        await self._client.wait_for_room(self._account_id)
        started = time.time()
        window = self._client.send_window_of(self._account_id)
        self._client.memory.note_send(self._account_id, started, window.seconds)
        return started

    def after_send(self, started: float) -> None:
        self._client.memory.settle_send(self._account_id, started, time.time())


class PluginClient:
    """Drain one Stoflow login's plugin queue; `run` is the whole life of the client."""

    def __init__(self, config: PluginClientConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self.memory = TaskMemory(state_file_for(config.state_dir, config.email))
        self._rng = rng or random.SystemRandom()
        self._held: dict[str, _Held] = {}
        self._queues: dict[int, asyncio.Queue[Task]] = {}
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._sessions: dict[int, VintedAccountSession] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._fatal: BaseException | None = None
        self._summary = RunSummary()
        self._api: StoflowApi | None = None
        self._images: httpx.AsyncClient | None = None
        #: the window each account is paced by; `_confirmed` holds those read from Stoflow
        self.send_windows: dict[int, SendWindow] = {}
        self._confirmed: set[int] = set()

    # --- the life of the client ------------------------------------------------------------------------

    async def run(self, max_tasks: int | None = None, until_idle: bool = False) -> RunSummary:
        """Claim and run tasks until `max_tasks` were handled, or (`until_idle`) nothing is left to do now.

        Without either, run until cancelled. A task cut short by cancellation is on disk and is
        re-reported, not re-run, when it comes back.
        """
        self._summary = RunSummary()
        self._fatal = None
        self.memory.open()
        self._api = StoflowApi(self.config.api_url, self.config.email, self.config.password)
        self._images = httpx.AsyncClient(timeout=self.config.request_timeout, follow_redirects=True)
        heartbeat: asyncio.Task[None] | None = None
        try:
            await self._api.login()
            await self._report_leftovers()
            heartbeat = asyncio.create_task(self._heartbeat_loop())
            await self._poll_loop(max_tasks, until_idle)
            while self._held:
                self._raise_fatal()
                await self._wait_for_change(None)
            self._raise_fatal()
        finally:
            await self._shut_down(heartbeat)
        log.info("plugin_run_finished", **vars(self._summary))
        return self._summary

    async def _shut_down(self, heartbeat: asyncio.Task[None] | None) -> None:
        pending = [*self._workers.values(), *self._background]
        if heartbeat is not None:
            pending.append(heartbeat)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._workers.clear()
        self._queues.clear()
        self._background.clear()
        self._held.clear()
        for session in self._sessions.values():
            await session.aclose()
        self._sessions.clear()
        if self._images is not None:
            await self._images.aclose()
        if self._api is not None:
            await self._api.aclose()
        self.memory.close()

    def send_window_of(self, vinted_account_id: int) -> SendWindow:
        """The window an account's sends are paced by (the options' or the default until Stoflow answers)."""
        window = self.send_windows.get(vinted_account_id)
        if window is None:
            window = choose_send_window(None, self.config.vinted_limit, self.config.vinted_window)
        return window

    async def _learn_send_window(self, vinted_account_id: int) -> SendWindow:
        """Read the account's limit and window from Stoflow once (retried on later tasks while it fails)."""
        config = self.config
        if vinted_account_id in self._confirmed:
            return self.send_windows[vinted_account_id]
        fetched: SendWindow | None = None
        if config.vinted_limit is None or config.vinted_window is None:
            fetched = await self._fetch_send_window(vinted_account_id)
        window = choose_send_window(fetched, config.vinted_limit, config.vinted_window)
        self.send_windows[vinted_account_id] = window
        if fetched is not None or (config.vinted_limit is not None and config.vinted_window is not None):
            self._confirmed.add(vinted_account_id)
        log.info(
            "vinted_send_window",
            vinted_account_id=vinted_account_id,
            limit=window.limit,
            window_seconds=window.seconds,
            source="stoflow" if fetched is not None else "options or default",
        )
        return window

    async def _fetch_send_window(self, vinted_account_id: int) -> SendWindow | None:
        assert self._api is not None
        path = f"/api/integrations/vinted/accounts/{vinted_account_id}/rate-limit"
        try:
            response = await self._api.call("GET", path)
        except httpx.HTTPError as exc:
            log.warning("plugin_rate_limit_unread", error=type(exc).__name__)
            return None
        if response.status_code != 200:
            log.warning(
                "plugin_rate_limit_unread", http_status=response.status_code, code=problem_code(response)
            )
            return None
        try:
            window = send_window_from(response.json())
        except ValueError:
            window = None
        if window is None:
            log.warning("plugin_rate_limit_unread", error="malformed")
        return window

    async def wait_for_room(
        self, vinted_account_id: int, needed: int = 1, task_id: str | None = None
    ) -> None:
        """Sleep until `needed` more sends fit in the account's window (or task `task_id` lost its lease)."""
        told = False
        while True:
            if task_id is not None:
                held = self._held.get(task_id)
                if held is None or held.lease_lost:
                    return
            window = self.send_window_of(vinted_account_id)
            sends = self.memory.sends.get(vinted_account_id, [])
            wait = window.seconds_until_room(sends, time.time(), needed)
            if wait <= 0:
                return
            if not told:
                told = True
                log.info(
                    "vinted_window_full",
                    vinted_account_id=vinted_account_id,
                    limit=window.limit,
                    window_seconds=window.seconds,
                    seconds_left=round(wait, 2),
                )
            # Whole waits for a held task, so a lease lost meanwhile is noticed within a heartbeat.
            await asyncio.sleep(min(wait, self.config.heartbeat_seconds) if task_id is not None else wait)

    def backoff_of(self, vinted_account_id: int) -> AccountBackoff | None:
        """The account's backoff while it lasts."""
        entry = self.memory.accounts.get(vinted_account_id)
        return entry if entry is not None and entry.backoff_until > time.time() else None

    def _pause_left(self) -> float:
        now = time.time()
        return max((entry.backoff_until - now for entry in self.memory.accounts.values()), default=0.0)

    def _changed_now(self) -> None:
        self._changed.set()

    async def _wait_for_change(self, seconds: float | None) -> None:
        self._changed.clear()
        try:
            async with asyncio.timeout(seconds):
                await self._changed.wait()
        except TimeoutError:
            pass

    def _raise_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    # --- claiming --------------------------------------------------------------------------------------

    async def _poll_loop(self, max_tasks: int | None, until_idle: bool) -> None:
        failures = 0
        while True:
            self._raise_fatal()
            summary = self._summary
            if max_tasks is not None and summary.handled >= max_tasks:
                return
            if until_idle and self._held:
                # Until-idle runs claim in rounds: the queue is idle when a poll after a round is empty.
                await self._wait_for_change(None)
                continue
            pause = self._pause_left()
            if pause > 0:
                if until_idle:
                    log.info("plugin_idle_backing_off", seconds_left=round(pause, 1))
                    return
                log.info("plugin_claims_paused", seconds_left=round(pause, 1))
                await self._wait_for_change(pause)
                continue
            capacity = self.config.poll_limit - len(self._held)
            if max_tasks is not None:
                capacity = min(capacity, max_tasks - summary.handled - len(self._held))
            if capacity <= 0:
                await self._wait_for_change(None)
                continue
            tasks = await self._claim(capacity)
            if tasks is None:
                failures += 1
                await asyncio.sleep(min(self.config.retry_seconds * 2 ** min(failures, 6), 60.0))
                continue
            failures = 0
            if not tasks and until_idle:
                return
            for task in tasks:
                self._accept(task)

    async def _claim(self, limit: int) -> list[Task] | None:
        """Long-poll for up to `limit` tasks; None when Stoflow could not be reached."""
        assert self._api is not None
        wait = self.config.poll_wait
        try:
            response = await self._api.call(
                "GET", "/api/plugin/tasks", params={"wait": wait, "limit": limit}, timeout=wait + 15.0
            )
        except httpx.HTTPError as exc:
            log.warning("plugin_poll_failed", error=type(exc).__name__)
            return None
        if response.status_code != 200:
            log.warning("plugin_poll_refused", http_status=response.status_code, code=problem_code(response))
            return None
        tasks = []
        for raw in response.json().get("tasks", []):
            try:
                tasks.append(Task.from_json(raw))
            except (KeyError, TypeError, ValueError):
                log.error(
                    "plugin_task_malformed", task_id=str(raw.get("id")) if isinstance(raw, dict) else None
                )
        return tasks

    def _accept(self, task: Task) -> None:
        current = self._held.get(task.id)
        if current is not None:
            # Its lease lapsed while it waited here and this poll claimed it again: keep the new lease.
            current.task = task
            current.lease_lost = False
            return
        record = self.memory.get(task.id)
        if record is not None:
            self._hold(task)
            self._spawn(self._re_report(task))
            return
        if self.backoff_of(task.vinted_account_id) is not None:
            self._summary.released += 1
            log.info("plugin_task_left", task_id=task.id, reason="account_backing_off")
            return
        self._hold(task)
        queue = self._queues.get(task.vinted_account_id)
        if queue is None:
            queue = self._queues[task.vinted_account_id] = asyncio.Queue()
            self._workers[task.vinted_account_id] = asyncio.create_task(
                self._account_worker(task.vinted_account_id, queue)
            )
        queue.put_nowait(task)

    def _hold(self, task: Task) -> None:
        self._held[task.id] = _Held(task)
        self._changed_now()

    def _let_go(self, task_id: str) -> None:
        self._held.pop(task_id, None)
        self._changed_now()

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- running ---------------------------------------------------------------------------------------

    async def _account_worker(self, account_id: int, queue: asyncio.Queue[Task]) -> None:
        """Run one account's tasks one after the other."""
        while True:
            task = await queue.get()
            held = self._held.get(task.id)
            if held is None:
                continue
            try:
                if not held.lease_lost and self.backoff_of(account_id) is None:
                    # Start only once the window has room for the whole task (and the session's home
                    # page, if it is still to open), so its requests are not split across windows.
                    await self._learn_send_window(account_id)
                    session = self._sessions.get(account_id)
                    needed = len(task.requests) + (0 if session is not None and session.ready else 1)
                    await self.wait_for_room(account_id, needed, task_id=task.id)
                task = held.task  # claimed again while it waited: the newest lease
                if held.lease_lost or self.backoff_of(account_id) is not None:
                    self._summary.released += 1
                    reason = "lease_lost" if held.lease_lost else "account_backing_off"
                    log.info("plugin_task_left", task_id=task.id, reason=reason)
                    continue
                held.started = True
                await self._run_task(task)
            except LoginFailed as exc:
                self._fatal = exc
                return
            except Exception:
                # The task is on disk as far as it got; it is re-reported when it comes back.
                log.exception("plugin_task_crashed", task_id=task.id)
            finally:
                self._let_go(task.id)

    def _session(self, task: Task) -> VintedAccountSession:
        session = self._sessions.get(task.vinted_account_id)
        if session is None:
            cookies = self.config.vinted_cookies.get(
                task.vinted_user_id or ""
            ) or self.config.vinted_cookies.get(str(task.vinted_account_id))
            session = VintedAccountSession(
                base_url=self.config.vinted_url,
                vinted_user_id=task.vinted_user_id,
                pacing=Pacing(self.config.write_gap, self.config.read_gap),
                timeout=self.config.request_timeout,
                sandbox_login=self.config.sandbox_login,
                cookies=cookies,
                rng=self._rng,
                gate=_AccountSends(self, task.vinted_account_id),
            )
            self._sessions[task.vinted_account_id] = session
        return session

    async def _run_task(self, task: Task) -> None:
        with structlog.contextvars.bound_contextvars(
            task_id=task.id,
            job_id=task.job_id,
            operation=task.operation,
            vinted_account_id=task.vinted_account_id,
        ):
            # On disk before anything leaves: from here on this task is never sent again.
            self.memory.begin(
                task.id,
                job_id=task.job_id,
                operation=task.operation,
                vinted_account_id=task.vinted_account_id,
                lease_id=task.lease_id,
                request_count=len(task.requests),
            )
            self._summary.ran += 1
            responses: list[dict[str, Any]] = []
            local_error: dict[str, str] | None = None
            session = self._session(task)
            if not session.ready:
                failed = await session.bootstrap()
                if failed is not None:
                    # The page that opens the session is the first thing this task sent.
                    self._record(task, responses, failed)
            if not responses:
                for request in task.requests:
                    try:
                        prepared = prepare_request(request, responses)
                        method, path = prepared.method, prepared.path
                        upload = await self._upload(prepared.upload)
                    except UnresolvedReference as exc:
                        local_error = {"code": "unresolved_reference", "message": str(exc)}
                        break
                    except ImageUnavailable as exc:
                        self._record(task, responses, Exchange(0, {"error": str(exc)}))
                        local_error = {"code": "image_unavailable", "message": str(exc)}
                        break
                    exchange = await session.send(method, path, prepared.json, upload)
                    self._record(task, responses, exchange)
                    log.info(
                        "vinted_request_sent", method=method, path=path, http_status=exchange.http_status
                    )
                    if not is_success(exchange.http_status):
                        break
            result = judge(responses, len(task.requests), local_error)
            self.memory.conclude(task.id, result)
            log.info(
                "plugin_task_ran",
                status=result["status"],
                http_status=responses[-1]["http_status"] if responses else None,
                requests=len(responses),
            )
            await self._report(task.id, task.lease_id, result)

    def _record(self, task: Task, responses: list[dict[str, Any]], exchange: Exchange) -> None:
        """Keep an answer (memory first), and let it set or clear the account's backoff."""
        responses.append(exchange.reported())
        self.memory.add_response(task.id, exchange.reported())
        account = task.vinted_account_id
        if exchange.penalty is not None:
            previous = self.memory.accounts.get(account)
            streak = previous.streak if previous is not None else 0
            seconds = self.config.backoff.seconds(exchange.penalty, streak, exchange.retry_after)
            self.memory.set_backoff(account, time.time() + seconds, streak + 1)
            log.warning("vinted_backoff", penalty=str(exchange.penalty), seconds=seconds, streak=streak + 1)
            self._changed_now()
        elif is_success(exchange.http_status):
            self.memory.clear_streak(account)

    async def _upload(self, spec: UploadSpec | None) -> Upload | None:
        """Download the image an `$upload` names, ready to send as a multipart form."""
        if spec is None:
            return None
        content, content_type, filename = await self._download(spec.url)
        return Upload(spec.fields, spec.file_field, filename, content, content_type)

    async def _download(self, url: str) -> tuple[bytes, str, str]:
        """Fetch an image to upload (a signed Stoflow media URL: it is never logged)."""
        assert self._images is not None
        try:
            response = await self._images.get(url)
        except httpx.HTTPError as exc:
            raise ImageUnavailable(f"the image could not be downloaded ({type(exc).__name__})") from exc
        if response.status_code != 200 or not response.content:
            raise ImageUnavailable(f"the image could not be downloaded (HTTP {response.status_code})")
        content_type = response.headers.get("content-type", "image/jpeg").split(";")[0].strip()
        filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or "photo.jpg"
        return response.content, content_type, filename

    # --- reporting -------------------------------------------------------------------------------------

    async def _re_report(self, task: Task) -> None:
        """A task that ran before came back: send what it got then, with the new lease."""
        try:
            with structlog.contextvars.bound_contextvars(
                task_id=task.id, job_id=task.job_id, operation=task.operation
            ):
                record = self.memory.get(task.id)
                assert record is not None
                result = record.result
                if result is None:
                    result = interrupted_result(record.responses, record.request_count)
                    self.memory.conclude(task.id, result)
                self._summary.re_reported += 1
                log.info("plugin_task_already_ran", status=result["status"])
                await self._report(task.id, task.lease_id, result)
        except LoginFailed as exc:
            self._fatal = exc
        finally:
            self._let_go(task.id)

    async def _report_leftovers(self) -> None:
        """Send the results an earlier run could not deliver (an earlier lease is still accepted)."""
        for task_id, record in self.memory.unreported().items():
            result = record.result
            if result is None:
                result = interrupted_result(record.responses, record.request_count)
                self.memory.conclude(task_id, result)
            with structlog.contextvars.bound_contextvars(
                task_id=task_id, job_id=record.job_id, operation=record.operation
            ):
                log.info("plugin_result_recovered", status=result["status"])
                self._summary.recovered += 1
                await self._report(task_id, record.lease_id, result)

    async def _report(self, task_id: str, lease_id: str, result: dict[str, Any]) -> bool:
        """Deliver a result, retrying network failures and 5xx; a 409 or 404 ends it for this task."""
        assert self._api is not None
        payload = {"lease_id": lease_id, **result}
        for attempt in range(self.config.report_attempts):
            if attempt:
                await asyncio.sleep(min(self.config.retry_seconds * 2 ** (attempt - 1), 60.0))
            try:
                response = await self._api.call("POST", f"/api/plugin/tasks/{task_id}/result", json=payload)
            except httpx.HTTPError as exc:
                log.warning(
                    "plugin_report_failed", task_id=task_id, error=type(exc).__name__, attempt=attempt + 1
                )
                continue
            if response.status_code == 200:
                self.memory.mark_reported(task_id)
                self._summary.reported += 1
                log.info("plugin_result_reported", task_id=task_id, status=result["status"])
                return True
            if response.status_code >= 500 or response.status_code == 429:
                log.warning("plugin_report_failed", task_id=task_id, http_status=response.status_code)
                continue
            # already_reported, lease_lost, not_found, validation_error: sending it again cannot help.
            self.memory.mark_reported(task_id)
            log.warning(
                "plugin_result_refused",
                task_id=task_id,
                http_status=response.status_code,
                code=problem_code(response),
            )
            return False
        self._summary.deferred += 1
        log.error("plugin_result_deferred", task_id=task_id)
        return False

    async def _heartbeat_loop(self) -> None:
        """Keep the leases of every task held here alive, running or waiting its turn."""
        assert self._api is not None
        while True:
            await asyncio.sleep(self.config.heartbeat_seconds)
            for task_id, held in list(self._held.items()):
                if held.lease_lost:
                    continue
                try:
                    response = await self._api.call(
                        "POST",
                        f"/api/plugin/tasks/{task_id}/heartbeat",
                        json={"lease_id": held.task.lease_id},
                    )
                except LoginFailed as exc:
                    self._fatal = exc
                    self._changed_now()
                    return
                except httpx.HTTPError as exc:
                    log.warning("plugin_heartbeat_failed", task_id=task_id, error=type(exc).__name__)
                    continue
                if response.status_code in {404, 409}:
                    # Handed out again: an unstarted task is left for its new holder; a started one
                    # still reports (a result from an earlier lease is accepted).
                    held.lease_lost = True
                    log.warning("plugin_lease_lost", task_id=task_id, started=held.started)
                elif response.status_code != 200:
                    log.warning("plugin_heartbeat_refused", task_id=task_id, http_status=response.status_code)
