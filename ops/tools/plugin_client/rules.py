"""The plugin client's pure rules: placeholders, pacing, backoff and how a task's outcome is judged.

No I/O here: the runner feeds these functions what it saw and acts on their answers.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from ops.tools.plugin_client.errors import ImageUnavailable, InvalidGap, UnresolvedReference

#: The status a request gets when no HTTP answer arrived (connection refused, timeout, dropped answer).
NETWORK_FAILURE = 0
#: Longest text body kept from a non-JSON answer (an anti-bot page, a CDN error page).
TEXT_BODY_MAX = 4000
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CHALLENGE_MARKERS = ("captcha", "datadome", "challenge", "cf-chl", "cloudflare")
_REF_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")

ResultStatus = Literal["success", "error"]
Response = dict[str, Any]


# --- $ref placeholders ----------------------------------------------------------------------------------


def _ref_steps(reference: str) -> list[str | int]:
    """Split `responses[0].item.photos[1].id` into `["responses", 0, "item", "photos", 1, "id"]`."""
    steps: list[str | int] = []
    position = 0
    while position < len(reference):
        if reference[position] == "." and steps:
            position += 1
        match = _REF_STEP.match(reference, position)
        if match is None:
            raise UnresolvedReference(reference, "it is not a path like responses[i].field")
        name, index = match.groups()
        steps.append(int(index) if index is not None else name)
        position = match.end()
    if len(steps) < 2 or steps[0] != "responses" or not isinstance(steps[1], int):
        raise UnresolvedReference(reference, "it does not start with responses[i]")
    return steps


def lookup_reference(reference: str, responses: Sequence[Response]) -> Any:
    """Read `responses[i].path.to.field` from the bodies of the responses received so far."""
    steps = _ref_steps(reference)
    index = steps[1]
    assert isinstance(index, int)
    if index >= len(responses):
        raise UnresolvedReference(reference, f"only {len(responses)} responses were received")
    value: Any = responses[index].get("body")
    for step in steps[2:]:
        found_in_list = isinstance(step, int) and isinstance(value, list) and step < len(value)
        found_in_dict = isinstance(step, str) and isinstance(value, dict) and step in value
        if found_in_list or found_in_dict:
            value = value[step]
        else:
            raise UnresolvedReference(reference, f"the response has no {step!r} there")
    return value


def resolve_references(value: Any, responses: Sequence[Response]) -> Any:
    """Replace every `{"$ref": "responses[i]..."}` in a request body by the value it names."""
    if isinstance(value, dict):
        if set(value) == {"$ref"} and isinstance(value["$ref"], str):
            return lookup_reference(value["$ref"], responses)
        return {key: resolve_references(item, responses) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_references(item, responses) for item in value]
    return value


# --- multipart uploads ----------------------------------------------------------------------------------


def _form_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def flatten_form(body: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Turn `{"photo": {"type": "item"}}` into `[("photo[type]", "item")]`, as a browser form sends it."""
    fields: list[tuple[str, str]] = []
    for key, value in body.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, Mapping):
            fields.extend(flatten_form(value, name))
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, Mapping):
                    fields.extend(flatten_form(item, f"{name}[]"))
                else:
                    fields.append((f"{name}[]", _form_value(item)))
        else:
            fields.append((name, _form_value(value)))
    return fields


@dataclass(frozen=True)
class UploadSpec:
    """A multipart photo upload still to send: form fields, the file's field name and where to fetch it."""

    fields: list[tuple[str, str]]
    file_field: str
    url: str


@dataclass(frozen=True)
class PreparedRequest:
    """One task request as it leaves for Vinted: placeholders filled, an `$upload` turned into a form."""

    method: str
    path: str
    json: Any
    upload: UploadSpec | None


def prepare_request(request: Mapping[str, Any], responses: Sequence[Response]) -> PreparedRequest:
    """Fill a task request's `$ref` placeholders from the answers so far and read its `$upload`, if any.

    UnresolvedReference when a placeholder names what the answers do not hold; ImageUnavailable when
    an `$upload` names no field or url.
    """
    method = str(request.get("method", "GET")).upper()
    path = str(request["path"])
    body = resolve_references(request.get("body"), responses)
    if not isinstance(body, dict) or "$upload" not in body:
        return PreparedRequest(method, path, None if method in {"GET", "HEAD"} else body, None)
    spec = body.pop("$upload")
    if not isinstance(spec, dict) or not spec.get("field") or not spec.get("url"):
        raise ImageUnavailable("the $upload names no field or url")
    return PreparedRequest(
        method, path, None, UploadSpec(flatten_form(body), str(spec["field"]), str(spec["url"]))
    )


# --- pacing ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GapRange:
    """The least pause before a request to one Vinted account, drawn uniformly between two bounds."""

    low: float
    high: float

    def pick(self, rng: random.Random) -> float:
        """Draw one gap."""
        return self.low if self.high <= self.low else float(rng.uniform(self.low, self.high))


def parse_gap(text: str) -> GapRange:
    """Read `MIN-MAX` (or a single number) in seconds, e.g. `5-12`, `0-0`, `3`."""
    parts = text.strip().split("-")
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        raise InvalidGap(f"{text!r} is not MIN-MAX in seconds") from None
    if len(numbers) == 1:
        numbers *= 2
    if len(numbers) != 2 or numbers[0] < 0 or numbers[1] < numbers[0]:
        raise InvalidGap(f"{text!r} is not MIN-MAX with 0 <= MIN <= MAX")
    return GapRange(numbers[0], numbers[1])


def is_write(method: str) -> bool:
    """Tell whether a request changes something on Vinted (paced with the longer write gap)."""
    return method.upper() in WRITE_METHODS


def seconds_until_send(last_request_end: float | None, gap: float, now: float) -> float:
    """How long to wait so that at least `gap` seconds separate this request from the previous one."""
    if last_request_end is None:
        return 0.0
    return max(last_request_end + gap - now, 0.0)


# --- Vinted's own request window -----------------------------------------------------------------------

#: What Stoflow allows per Vinted account when its rate-limit endpoint cannot be read (40 per 2 hours).
DEFAULT_SEND_LIMIT = 40
DEFAULT_SEND_WINDOW_SECONDS = 7200.0


@dataclass(frozen=True)
class SendWindow:
    """At most `limit` requests to one Vinted account within any `seconds`, counted as the plugin sends.

    Stoflow takes the account's slots when it releases a task; a plugin that sends late could still burst
    past the limit in Vinted's own log, so the plugin keeps its own sliding log of sends and paces by it.
    """

    limit: int = DEFAULT_SEND_LIMIT
    seconds: float = DEFAULT_SEND_WINDOW_SECONDS

    def recent(self, sends: Iterable[float], now: float) -> list[float]:
        """The sends still inside the window that ends at `now` (a send leaves it `seconds` later), sorted."""
        return sorted(moment for moment in sends if moment > now - self.seconds)

    def seconds_until_room(self, sends: Iterable[float], now: float, needed: int = 1) -> float:
        """How long to wait until `needed` more sends fit (at least one, at most `limit`); 0 when they do."""
        recent = self.recent(sends, now)
        excess = len(recent) + min(max(needed, 1), self.limit) - self.limit
        if excess <= 0:
            return 0.0
        return max(recent[excess - 1] + self.seconds - now, 0.0)


def send_window_from(body: Any) -> SendWindow | None:
    """Read `{"limit", "window_seconds"}` from Stoflow's rate-limit endpoint; None when it is not that."""
    if not isinstance(body, Mapping):
        return None
    limit, seconds = body.get("limit"), body.get("window_seconds")
    if isinstance(limit, bool) or isinstance(seconds, bool):
        return None
    if not isinstance(limit, int) or not isinstance(seconds, int | float):
        return None
    if limit < 1 or not seconds > 0:
        return None
    return SendWindow(limit, float(seconds))


def choose_send_window(
    fetched: SendWindow | None, limit: int | None = None, seconds: float | None = None
) -> SendWindow:
    """The window to pace by: the options given win, then Stoflow's answer, then 40 per 2 hours."""
    base = fetched or SendWindow()
    return SendWindow(
        limit if limit is not None else base.limit, seconds if seconds is not None else base.seconds
    )


# --- backoff --------------------------------------------------------------------------------------------


class Penalty(StrEnum):
    """Why Vinted wants an account to slow down."""

    RATE_LIMITED = "rate_limited"  #: a 429
    CHALLENGE = "challenge"  #: a 403 anti-bot challenge (Datadome captcha, Cloudflare interstitial)


@dataclass(frozen=True)
class BackoffPolicy:
    """Base pauses per penalty, doubled on each consecutive penalty of an account, up to `ceiling`."""

    rate_limited: float = 15 * 60
    challenge: float = 30 * 60
    ceiling: float = 6 * 3600

    def seconds(self, penalty: Penalty, streak: int, retry_after: float | None = None) -> float:
        """The pause after a penalty that follows `streak` earlier ones without a success in between."""
        base = self.rate_limited if penalty is Penalty.RATE_LIMITED else self.challenge
        pause = min(base * float(2 ** min(streak, 32)), self.ceiling)
        return max(pause, min(retry_after or 0.0, self.ceiling))


def is_challenge(status: int, headers: Mapping[str, str], body: Any) -> bool:
    """Tell an anti-bot 403 from an ordinary refusal (bad CSRF token, not your item)."""
    if status != 403:
        return False
    lowered = {key.lower(): value.lower() for key, value in headers.items()}
    if lowered.get("cf-mitigated") == "challenge" or "x-datadome" in lowered:
        return True
    text = (body if isinstance(body, str) else json.dumps(body, default=str)).lower()
    return any(marker in text for marker in _CHALLENGE_MARKERS)


def penalty_of(status: int, headers: Mapping[str, str], body: Any) -> Penalty | None:
    """Name the penalty an answer carries, if any."""
    if status == 429:
        return Penalty.RATE_LIMITED
    if is_challenge(status, headers, body):
        return Penalty.CHALLENGE
    return None


def retry_after_seconds(value: str | None) -> float | None:
    """Read a `Retry-After` given in seconds (HTTP dates are rare from Vinted and ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


# --- outcome --------------------------------------------------------------------------------------------


def is_success(http_status: int) -> bool:
    return 200 <= http_status < 300


def response_body(content: bytes, content_type: str) -> Any:
    """Keep JSON as JSON, other text cut to TEXT_BODY_MAX characters, nothing as None."""
    if not content:
        return None
    if "json" in content_type.lower():
        try:
            return json.loads(content)
        except ValueError:
            pass
    return content.decode("utf-8", errors="replace")[:TEXT_BODY_MAX]


def _error_for(last: Response) -> dict[str, str]:
    status = int(last.get("http_status") or 0)
    body = last.get("body")
    if status == NETWORK_FAILURE:
        detail = body.get("error") if isinstance(body, dict) else None
        return {"code": "network_error", "message": str(detail or "No answer from Vinted.")}
    if status == 429:
        return {"code": "rate_limited", "message": "Vinted answered 429 Too Many Requests."}
    if is_challenge(status, {}, body):
        return {"code": "antibot_challenge", "message": "Vinted answered with an anti-bot challenge."}
    message = ""
    if isinstance(body, dict):
        message = str(body.get("message") or body.get("message_code") or "")
    return {
        "code": "vinted_error",
        "message": f"Vinted answered {status}" + (f": {message}" if message else "."),
    }


def judge(
    responses: Sequence[Response], request_count: int, local_error: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Build the result to report: success only when every request ran and got a 2xx answer."""
    ran_all = len(responses) == request_count
    if local_error is None and ran_all and all(is_success(int(r["http_status"])) for r in responses):
        return {"status": "success", "responses": list(responses)}
    if local_error is not None:
        error = dict(local_error)
    elif responses:
        error = _error_for(responses[-1])
    else:
        error = {"code": "not_run", "message": "No request of the task was sent."}
    return {"status": "error", "responses": list(responses), "error": error}


def interrupted_result(responses: Sequence[Response], request_count: int) -> dict[str, Any]:
    """Judge a task whose run was cut short (crash, kill) from the responses saved before it stopped.

    The request that was in flight may or may not have reached Vinted; it is reported as a network
    failure rather than sent again.
    """
    completed = list(responses)
    if len(completed) < request_count and all(is_success(int(r["http_status"])) for r in completed):
        completed.append(
            {"http_status": NETWORK_FAILURE, "body": {"error": "The plugin stopped while this request ran."}}
        )
        return judge(
            completed, request_count, {"code": "interrupted", "message": "The plugin stopped mid-task."}
        )
    return judge(completed, request_count)
