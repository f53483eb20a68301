"""HTTP to the marketplaces: explicit timeouts, a short in-process retry budget, OAuth refresh, and the
translation of every answer into our errors.

What a call can end in (the job runner decides what happens next, see workers/errors.py)::

    answer                                  raised
    2xx, or a status the caller accepts     nothing: the response is returned
    timeout, broken connection, 408, 409,   TransientPlatformError, after the in-process retries
      429 (Retry-After honoured), 5xx       (`retry_after` carried to the runner's own backoff)
    401                                     the token is refreshed once and the call made once more;
                                            still 401 -> AuthExpired
    other 4xx                               PermanentPlatformError("platform_rejected", <their message>)

In-process retries are kept to a few tries and seconds: a longer outage is the runner's business, which
reschedules the job with its own backoff instead of holding a worker slot. A write that is not safe to
repeat (`idempotent=False`) is retried here only when the marketplace cannot have acted on it (refused
connection, 429); after an ambiguous failure the next run of the job checks before it writes again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
    wait_random,
)

from domain.jobs import JobErrorCode
from workers.errors import AuthExpired, PermanentPlatformError, TransientPlatformError
from workers.platforms.base import CredentialsLock

log = structlog.get_logger(__name__)

#: Statuses that say "not now" rather than "no": retried here, then by the runner.
TRANSIENT_STATUSES = frozenset({408, 409, 429})
#: Generous enough for an image upload, short enough that a hung marketplace frees the worker.
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=20.0, write=20.0, pool=5.0)
#: Marketplace messages can be long (eBay lists every problem); the job error keeps the start.
MESSAGE_MAX = 1000


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one call tries before the job runner takes over."""

    attempts: int = 3
    #: First backoff wait; it doubles per try, up to `max_wait`, plus up to `jitter` random seconds.
    initial_wait: float = 0.5
    max_wait: float = 4.0
    jitter: float = 0.5
    #: A Retry-After longer than this is left to the runner instead of being slept here.
    max_retry_after: float = 10.0
    #: No retry starts whose wait would end past this many seconds after the first try.
    budget_seconds: float = 15.0
    #: How to wait between tries (tests pass a recorder instead of sleeping).
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


class RequestPacer(Protocol):
    """Anything that makes a request wait for its slot (per process, or shared through Redis)."""

    async def acquire(self) -> None: ...


class RequestRateLimiter:
    """Space requests to at most `rate` per second, with bursts of `burst`, for one process.

    A GCRA token bucket: each caller reserves the next free slot synchronously (nothing awaits between
    reading and writing the schedule, so no lock is needed under asyncio) and then sleeps until it.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limiter needs rate > 0 and burst >= 1")
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval
        self._clock = clock
        self._sleep = sleep
        self._next_slot = 0.0

    async def acquire(self) -> None:
        """Wait for a request slot."""
        now = self._clock()
        slot = max(self._next_slot, now - self._tolerance)
        self._next_slot = slot + self._interval
        wait = slot - now
        if wait > 0:
            await self._sleep(wait)


class _NotProcessed(TransientPlatformError):
    """A failure after which the marketplace surely did nothing: safe to retry even a create."""


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Read a Retry-After header: delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _retry_predicate(idempotent: bool, policy: RetryPolicy) -> Callable[[BaseException], bool]:
    def retryable(error: BaseException) -> bool:
        if not isinstance(error, TransientPlatformError):
            return False
        if error.retry_after is not None and error.retry_after > policy.max_retry_after:
            return False
        return idempotent or isinstance(error, _NotProcessed)

    return retryable


def _wait_strategy(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    # Built from the two classic strategies: wait_exponential_jitter changed its signature across
    # tenacity releases.
    backoff = wait_exponential(multiplier=policy.initial_wait, max=policy.max_wait) + wait_random(
        0, policy.jitter
    )

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, int | float):
            # The marketplace said when; waiting less would only earn another 429.
            return float(retry_after)
        return float(backoff(state))

    return wait


async def send_with_retries(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    label: str,
    policy: RetryPolicy,
    timeouts: httpx.Timeout,
    idempotent: bool = True,
    limiter: RequestPacer | None = None,
    build_headers: Callable[[], Mapping[str, str]] | None = None,
    **request_args: Any,
) -> httpx.Response:
    """Send one request, retrying transient failures within `policy`; return any non-transient answer.

    Raises TransientPlatformError once the budget is spent (or at once for an ambiguous failure of a
    write that is not `idempotent`). `build_headers` runs before each try, so a refreshed token is used.
    """
    path = httpx.URL(url).path  # logged without the query: signed media URLs carry a signature there

    async def attempt() -> httpx.Response:
        if limiter is not None:
            await limiter.acquire()
        headers = dict(build_headers()) if build_headers is not None else {}
        try:
            response = await http.request(method, url, headers=headers, timeout=timeouts, **request_args)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            # The request never left: nothing can have happened on the marketplace.
            raise _NotProcessed(
                f"{label} unreachable for {method} {path} ({type(error).__name__})"
            ) from error
        except httpx.TimeoutException as error:
            raise TransientPlatformError(
                f"{label} timed out on {method} {path} ({type(error).__name__})"
            ) from error
        except httpx.TransportError as error:
            raise TransientPlatformError(
                f"{label} connection failed on {method} {path} ({type(error).__name__})"
            ) from error
        status = response.status_code
        if status == 429:
            raise _NotProcessed(
                f"{label} rate limited {method} {path} (429)",
                retry_after=retry_after_seconds(response.headers.get("retry-after")),
            )
        if status >= 500 or status in TRANSIENT_STATUSES:
            raise TransientPlatformError(
                f"{label} answered {status} to {method} {path}: {error_message(response)}",
                retry_after=retry_after_seconds(response.headers.get("retry-after")),
            )
        return response

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "platform_request_retry",
            target=label,
            method=method,
            path=path,
            attempt=state.attempt_number,
            wait_seconds=round(state.upcoming_sleep, 3),
            reason=getattr(error, "message", type(error).__name__),
        )

    retrying = AsyncRetrying(
        retry=retry_if_exception(_retry_predicate(idempotent, policy)),
        stop=stop_after_attempt(policy.attempts) | stop_before_delay(policy.budget_seconds),
        wait=_wait_strategy(policy),
        before_sleep=before_sleep,
        sleep=policy.sleep,
        reraise=True,
    )
    response: httpx.Response = await retrying(attempt)
    return response


def error_message(response: httpx.Response) -> str:
    """The marketplace's own words for a failed answer (eBay `errors[]`, Etsy/OAuth `error`), else text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    parts: list[str] = []
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list):
            for entry in errors:
                if isinstance(entry, dict):
                    text = entry.get("longMessage") or entry.get("message")
                    if isinstance(text, str) and text not in parts:
                        parts.append(text)
        for key in ("error", "error_description", "message", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value not in parts:
                parts.append(value)
    message = "; ".join(parts) if parts else response.text.strip()
    message = message or response.reason_phrase or f"HTTP {response.status_code}"
    return message[:MESSAGE_MAX]


def rejection(label: str, response: httpx.Response) -> PermanentPlatformError:
    """The permanent error for a refused call, carrying the marketplace's message."""
    return PermanentPlatformError(
        JobErrorCode.PLATFORM_REJECTED,
        f"{label} refused {response.request.method} {response.request.url.path} "
        f"({response.status_code}): {error_message(response)}",
    )


#: Exchange a refresh token for a token answer (`access_token`, maybe a rotated `refresh_token`).
RefreshTokens = Callable[[str], Awaitable[Mapping[str, Any]]]


class OAuthSession:
    """One job's marketplace tokens: the bearer to send, and a refresh that stores what it gets.

    With a `lock`, a refresh holds the (tenant, platform) lock and reads the stored tokens first: when
    another worker refreshed them meanwhile, those are taken as they are. Without it, ten workers holding
    the same expired token would each spend the refresh token, and where the marketplace rotates it (Etsy)
    all but the first would be refused and the shop disconnected.
    """

    def __init__(
        self,
        label: str,
        credentials: Mapping[str, Any] | None,
        refresh: RefreshTokens,
        save: Callable[[dict[str, Any]], Awaitable[None]],
        *,
        lock: CredentialsLock | None = None,
    ) -> None:
        if credentials is None:
            raise PermanentPlatformError(
                JobErrorCode.NOT_CONNECTED, f"The {label} account is not connected any more."
            )
        self._label = label
        self._tokens = dict(credentials)
        self._refresh = refresh
        self._save = save
        self._lock = lock

    def __repr__(self) -> str:
        return f"OAuthSession({self._label!r})"  # never the tokens

    @property
    def access_token(self) -> str:
        token = self._tokens.get("access_token")
        return token if isinstance(token, str) else ""

    async def refresh(self) -> None:
        """Get a valid access token: another worker's fresh one, or a new one from the marketplace."""
        if self._lock is None:
            self._tokens = await self._exchange(self._tokens)
            await self._save(dict(self._tokens))
            return
        refused = self.access_token
        async with self._lock() as stored:
            current = dict(stored.tokens or {})
            if current.get("access_token") and current.get("access_token") != refused:
                self._tokens = current  # refreshed by another worker while this one waited
                log.info("platform_token_taken_from_store", target=self._label)
                return
            self._tokens = await self._exchange(current or self._tokens)
            await stored.save(dict(self._tokens))

    async def _exchange(self, tokens: Mapping[str, Any]) -> dict[str, Any]:
        refresh_token = tokens.get("refresh_token")
        if not isinstance(refresh_token, str) or not refresh_token:
            raise AuthExpired(f"The {self._label} access token expired and there is no refresh token.")
        answer = await self._refresh(refresh_token)
        access_token = answer.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise AuthExpired(f"The {self._label} token endpoint gave no access token.")
        renewed = {**tokens, "access_token": access_token}
        rotated = answer.get("refresh_token")
        if isinstance(rotated, str) and rotated:
            renewed["refresh_token"] = rotated  # Etsy rotates refresh tokens: keep the newest
        log.info("platform_token_refreshed", target=self._label)
        return renewed


class MarketplaceClient:
    """Calls to one marketplace's API on the worker's shared httpx client."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        label: str,
        base_url: str,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        limiter: RequestPacer | None = None,
    ) -> None:
        self.http = http
        self.label = label
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.limiter = limiter

    async def call(
        self,
        method: str,
        path: str,
        *,
        auth: OAuthSession | None,
        headers: Mapping[str, str] | None = None,
        accept: frozenset[int] = frozenset(),
        idempotent: bool = True,
        **request_args: Any,
    ) -> httpx.Response:
        """Make one API call; return a 2xx answer or one whose status is in `accept`, else raise.

        With `auth`, a 401 refreshes the token once and repeats the call once (a 401 means the call was
        not acted on, so even a create is safe to repeat); a second 401 is AuthExpired.
        """
        extra = dict(headers or {})

        def build_headers() -> dict[str, str]:
            if auth is None:
                return extra
            return {**extra, "Authorization": f"Bearer {auth.access_token}"}

        refreshed = False
        while True:
            response = await send_with_retries(
                self.http,
                method,
                self.base_url + path,
                label=self.label,
                policy=self.retry,
                timeouts=self.timeout,
                idempotent=idempotent,
                limiter=self.limiter,
                build_headers=build_headers,
                **request_args,
            )
            if response.status_code == 401 and auth is not None and 401 not in accept:
                if refreshed:
                    raise AuthExpired(
                        f"{self.label} still refuses the refreshed token: {error_message(response)}"
                    )
                await auth.refresh()
                refreshed = True
                continue
            if response.is_success or response.status_code in accept:
                return response
            if response.status_code == 401:
                raise AuthExpired(f"{self.label} refused the credentials: {error_message(response)}")
            raise rejection(self.label, response)


def json_object(response: httpx.Response, label: str) -> dict[str, Any]:
    """The JSON object a successful answer carries; anything else is a marketplace fault worth a retry."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise TransientPlatformError(
            f"{label} answered {response.request.method} {response.request.url.path} without a JSON object"
        )
    return body
