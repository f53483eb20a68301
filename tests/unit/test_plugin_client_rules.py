"""The plugin client's pure rules, and its on-disk memory of tasks run."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from ops.tools.plugin_client.errors import CorruptState, InvalidGap, StateLocked, UnresolvedReference
from ops.tools.plugin_client.memory import TaskMemory, state_file_for
from ops.tools.plugin_client.rules import (
    BackoffPolicy,
    GapRange,
    Penalty,
    SendWindow,
    choose_send_window,
    flatten_form,
    interrupted_result,
    is_challenge,
    judge,
    parse_gap,
    penalty_of,
    resolve_references,
    response_body,
    retry_after_seconds,
    seconds_until_send,
    send_window_from,
)

PHOTO = {"http_status": 200, "body": {"id": 8000000001, "url": "https://images1.vinted.net/x.jpeg"}}
ITEM = {"http_status": 200, "body": {"item": {"id": 4000000001, "photos": [{"id": 7}, {"id": 9}]}, "code": 0}}


# --- $ref -----------------------------------------------------------------------------------------------


def test_refs_are_replaced_by_the_field_of_the_earlier_response_anywhere_in_the_body() -> None:
    body: dict[str, Any] = {
        "item": {
            "title": "Pull",
            "assigned_photos": [{"id": {"$ref": "responses[0].id"}, "orientation": 0}],
            "first": {"$ref": "responses[1].item.photos[1].id"},
        }
    }

    resolved = resolve_references(body, [PHOTO, ITEM])

    assert resolved == {
        "item": {"title": "Pull", "assigned_photos": [{"id": 8000000001, "orientation": 0}], "first": 9}
    }
    assert body["item"]["assigned_photos"][0]["id"] == {"$ref": "responses[0].id"}  # input untouched


def test_a_dict_with_other_keys_beside_ref_is_left_alone() -> None:
    body = {"$ref": "responses[0].id", "note": "not a placeholder"}

    assert resolve_references(body, [PHOTO]) == body


@pytest.mark.parametrize(
    "reference",
    [
        "responses[2].id",
        "responses[0].missing",
        "responses[1].item.photos[5].id",
        "item.id",
        "responses.id",
        "",
    ],
)
def test_unresolvable_refs_raise(reference: str) -> None:
    with pytest.raises(UnresolvedReference):
        resolve_references({"x": {"$ref": reference}}, [PHOTO, ITEM])


# --- multipart ------------------------------------------------------------------------------------------


def test_upload_bodies_flatten_to_bracketed_form_fields() -> None:
    body = {"photo": {"type": "item", "temp_uuid": "abc", "flags": [1, 2], "main": True, "note": None}}

    assert flatten_form(body) == [
        ("photo[type]", "item"),
        ("photo[temp_uuid]", "abc"),
        ("photo[flags][]", "1"),
        ("photo[flags][]", "2"),
        ("photo[main]", "true"),
        ("photo[note]", ""),
    ]


# --- gaps -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5-12", GapRange(5, 12)),
        ("0-0", GapRange(0, 0)),
        ("3", GapRange(3, 3)),
        ("0.5-1.5", GapRange(0.5, 1.5)),
    ],
)
def test_gap_options_parse(text: str, expected: GapRange) -> None:
    assert parse_gap(text) == expected


@pytest.mark.parametrize("text", ["12-5", "-1-2", "a-b", "1-2-3", ""])
def test_bad_gap_options_are_refused(text: str) -> None:
    with pytest.raises(InvalidGap):
        parse_gap(text)


def test_gaps_are_drawn_within_their_bounds_and_zero_means_no_wait() -> None:
    rng = random.Random(7)
    draws = [GapRange(5, 12).pick(rng) for _ in range(500)]

    assert all(5 <= draw <= 12 for draw in draws)
    assert max(draws) - min(draws) > 5  # jittered, not constant
    assert GapRange(0, 0).pick(rng) == 0


def test_the_wait_before_a_request_counts_from_the_end_of_the_previous_one() -> None:
    assert seconds_until_send(None, 8.0, now=100.0) == 0
    assert seconds_until_send(100.0, 8.0, now=103.0) == 5.0
    assert seconds_until_send(100.0, 8.0, now=120.0) == 0
    assert seconds_until_send(100.0, 0.0, now=100.0) == 0


# --- Vinted's own window -------------------------------------------------------------------------------


def test_a_window_with_room_lets_a_send_go_at_once() -> None:
    window = SendWindow(limit=3, seconds=10)
    assert window.seconds_until_room([], now=100) == 0
    assert window.seconds_until_room([95, 99], now=100) == 0
    # Sends that left the window (exactly `seconds` ago or earlier) no longer count.
    assert window.seconds_until_room([80, 90, 95, 99], now=100) == 0


def test_a_full_window_waits_until_its_oldest_send_leaves() -> None:
    window = SendWindow(limit=3, seconds=10)
    assert window.seconds_until_room([99, 93, 96], now=100) == pytest.approx(3)
    assert window.seconds_until_room([93, 96, 99], now=103) == 0
    # The order of the log does not matter, and neither do sends that already left.
    assert window.seconds_until_room([50, 99, 96, 93.5], now=100) == pytest.approx(3.5)


def test_room_for_several_sends_waits_for_as_many_to_leave_and_never_asks_more_than_the_limit() -> None:
    window = SendWindow(limit=3, seconds=10)
    assert window.seconds_until_room([95], now=100, needed=2) == 0
    assert window.seconds_until_room([92, 95], now=100, needed=2) == pytest.approx(2)
    assert window.seconds_until_room([92, 95, 99], now=100, needed=2) == pytest.approx(5)
    assert window.seconds_until_room([92, 95, 99], now=100, needed=50) == pytest.approx(9)
    assert window.seconds_until_room([92, 95, 99], now=100, needed=0) == pytest.approx(2)


def test_pacing_a_backlog_by_the_window_never_puts_more_than_the_limit_in_any_window() -> None:
    window = SendWindow(limit=4, seconds=6)
    sends: list[float] = []
    now = 0.0
    for _ in range(30):  # a burst of tasks released over several windows, all sent as soon as allowed
        now += window.seconds_until_room(sends, now)
        sends.append(now)
        now += 0.01
    for moment in sends:
        assert sum(1 for other in sends if moment <= other < moment + window.seconds) <= window.limit
    assert sends[window.limit] >= sends[0] + window.seconds


def test_the_window_comes_from_stoflow_unless_options_say_otherwise() -> None:
    answer = {"limit": 40, "window_seconds": 6, "used": 3, "remaining": 37, "resets_at": None}
    assert send_window_from(answer) == SendWindow(40, 6.0)
    for malformed in (None, [], {}, {"limit": "40", "window_seconds": 6}, {"limit": 0, "window_seconds": 6}):
        assert send_window_from(malformed) is None
    assert send_window_from({"limit": 40, "window_seconds": 0}) is None
    assert send_window_from({"limit": True, "window_seconds": 6}) is None
    assert choose_send_window(None) == SendWindow(40, 7200.0)
    assert choose_send_window(SendWindow(40, 6.0)) == SendWindow(40, 6.0)
    assert choose_send_window(SendWindow(40, 6.0), limit=3) == SendWindow(3, 6.0)
    assert choose_send_window(None, limit=3, seconds=2) == SendWindow(3, 2.0)


# --- backoff --------------------------------------------------------------------------------------------


def test_backoff_starts_at_15_minutes_for_429_and_30_for_a_challenge_and_doubles_up_to_6_hours() -> None:
    policy = BackoffPolicy()

    assert [policy.seconds(Penalty.RATE_LIMITED, streak) for streak in range(6)] == [
        900,
        1800,
        3600,
        7200,
        14400,
        21600,
    ]
    assert [policy.seconds(Penalty.CHALLENGE, streak) for streak in range(5)] == [
        1800,
        3600,
        7200,
        14400,
        21600,
    ]
    assert policy.seconds(Penalty.CHALLENGE, 10_000) == 6 * 3600


def test_a_longer_retry_after_wins_but_stays_under_the_ceiling() -> None:
    policy = BackoffPolicy(rate_limited=1.0, challenge=2.0, ceiling=100.0)

    assert policy.seconds(Penalty.RATE_LIMITED, 0, retry_after=30) == 30
    assert policy.seconds(Penalty.RATE_LIMITED, 0, retry_after=0.5) == 1
    assert policy.seconds(Penalty.RATE_LIMITED, 0, retry_after=10_000) == 100
    assert retry_after_seconds("12") == 12
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert retry_after_seconds(None) is None


DATADOME = {"url": "https://geo.captcha-delivery.com/captcha/?initialCid=x&cid=y"}
CLOUDFLARE = (
    '<html><title>Just a moment...</title><script src="/cdn-cgi/challenge-platform/h/g"></script></html>'
)
CSRF = {"code": 106, "message": "Invalid CSRF token", "message_code": "invalid_csrf_token"}


def test_penalties_are_429_and_anti_bot_403s_only() -> None:
    assert penalty_of(429, {}, None) is Penalty.RATE_LIMITED
    assert penalty_of(403, {}, DATADOME) is Penalty.CHALLENGE
    assert penalty_of(403, {}, CLOUDFLARE) is Penalty.CHALLENGE
    assert penalty_of(403, {"cf-mitigated": "challenge"}, "") is Penalty.CHALLENGE
    assert penalty_of(403, {"X-DataDome": "protected"}, None) is Penalty.CHALLENGE
    assert penalty_of(403, {}, CSRF) is None
    assert penalty_of(400, {}, DATADOME) is None
    assert not is_challenge(500, {}, CLOUDFLARE)


# --- outcome --------------------------------------------------------------------------------------------


def test_success_needs_every_request_answered_2xx() -> None:
    assert judge([PHOTO, ITEM], 2) == {"status": "success", "responses": [PHOTO, ITEM]}


@pytest.mark.parametrize(
    ("last", "code"),
    [
        ({"http_status": 429, "body": {"code": 429}}, "rate_limited"),
        ({"http_status": 403, "body": DATADOME}, "antibot_challenge"),
        ({"http_status": 0, "body": {"error": "ConnectError: refused"}}, "network_error"),
        ({"http_status": 400, "body": {"message": "Validation error", "errors": []}}, "vinted_error"),
        ({"http_status": 502, "body": "<html>Error 502</html>"}, "vinted_error"),
    ],
)
def test_a_failed_request_makes_an_error_result_with_every_response_so_far(
    last: dict[str, Any], code: str
) -> None:
    result = judge([PHOTO, last], 3)

    assert result["status"] == "error"
    assert result["responses"] == [PHOTO, last]
    assert result["error"]["code"] == code


def test_a_local_error_wins_even_after_2xx_answers() -> None:
    result = judge([PHOTO], 2, {"code": "unresolved_reference", "message": "no id"})

    assert result == {
        "status": "error",
        "responses": [PHOTO],
        "error": {"code": "unresolved_reference", "message": "no id"},
    }


def test_an_interrupted_task_reports_the_request_in_flight_as_a_network_failure() -> None:
    cut_short = interrupted_result([PHOTO], 2)
    finished_before_the_crash = interrupted_result([PHOTO, ITEM], 2)
    refused_before_the_crash = interrupted_result([{"http_status": 429, "body": None}], 2)

    assert cut_short["status"] == "error"
    assert [r["http_status"] for r in cut_short["responses"]] == [200, 0]
    assert cut_short["error"]["code"] == "interrupted"
    assert finished_before_the_crash == {"status": "success", "responses": [PHOTO, ITEM]}
    assert refused_before_the_crash["responses"] == [{"http_status": 429, "body": None}]
    assert refused_before_the_crash["error"]["code"] == "rate_limited"


def test_bodies_are_kept_as_json_or_short_text() -> None:
    assert response_body(b'{"item": {"id": 1}}', "application/json; charset=utf-8") == {"item": {"id": 1}}
    assert response_body(b"<html>x</html>", "text/html") == "<html>x</html>"
    assert response_body(b"not json", "application/json") == "not json"
    assert response_body(b"", "application/json") is None
    assert len(response_body(b"x" * 10_000, "text/html")) == 4000


# --- the memory on disk ---------------------------------------------------------------------------------


def _begin(memory: TaskMemory, task_id: str = "t1") -> None:
    memory.begin(
        task_id, job_id="j1", operation="create_item", vinted_account_id=3, lease_id="l1", request_count=2
    )


def test_the_state_file_name_hashes_the_email(tmp_path: Path) -> None:
    path = state_file_for(tmp_path, "Someone@Example.com")

    assert path == state_file_for(tmp_path, "someone@example.com ")
    assert "example" not in path.name
    assert path.suffix == ".json"


def test_a_task_is_on_disk_from_its_start_and_after_each_answer(tmp_path: Path) -> None:
    memory = TaskMemory(tmp_path / "state.json")
    memory.open()
    _begin(memory)

    on_disk = json.loads((tmp_path / "state.json").read_text())
    assert on_disk["version"] == 1
    assert on_disk["tasks"]["t1"]["responses"] == []
    assert on_disk["tasks"]["t1"]["result"] is None

    memory.add_response("t1", PHOTO)
    memory.conclude("t1", judge([PHOTO], 2))
    memory.close()

    again = TaskMemory(tmp_path / "state.json")
    again.open()
    record = again.get("t1")
    assert record is not None
    assert record.responses == [PHOTO]
    assert record.result is not None and record.result["status"] == "error"
    assert set(again.unreported()) == {"t1"}
    again.mark_reported("t1")
    assert again.unreported() == {}
    again.close()
    assert not list(tmp_path.glob("*.tmp"))


def test_backoffs_survive_a_restart_and_a_success_clears_them(tmp_path: Path) -> None:
    memory = TaskMemory(tmp_path / "state.json")
    memory.open()
    memory.set_backoff(3, time.time() + 900, 1)
    memory.close()

    again = TaskMemory(tmp_path / "state.json")
    again.open()
    assert again.accounts[3].streak == 1
    again.clear_streak(3)
    assert again.accounts == {}
    again.close()


def test_sends_survive_a_restart_and_leave_the_log_with_the_window(tmp_path: Path) -> None:
    path = state_file_for(tmp_path, "a@example.com")
    memory = TaskMemory(path)
    memory.open()
    memory.note_send(7, 100.0, window_seconds=10)
    memory.settle_send(7, 100.0, 100.4)  # the answer came back: counted from then on
    memory.note_send(7, 105.0, window_seconds=10)  # in flight when the client stopped
    memory.close()

    again = TaskMemory(path)
    again.open()
    assert again.sends == {7: [100.4, 105.0]}
    again.note_send(7, 111.0, window_seconds=10)  # 100.4 has left the window
    assert again.sends[7] == [105.0, 111.0]
    again.close()


def test_reported_tasks_are_forgotten_after_a_week(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    memory = TaskMemory(path)
    memory.open()
    _begin(memory, "old")
    _begin(memory, "recent")
    _begin(memory, "unreported")
    memory.tasks["old"].reported_at = "2000-01-01T00:00:00+00:00"
    memory.mark_reported("recent")
    memory.close()

    again = TaskMemory(path)
    again.open()
    assert set(again.tasks) == {"recent", "unreported"}
    again.close()


def test_a_second_client_cannot_share_the_memory(tmp_path: Path) -> None:
    first = TaskMemory(tmp_path / "state.json")
    first.open()
    try:
        with pytest.raises(StateLocked):
            TaskMemory(tmp_path / "state.json").open()
    finally:
        first.close()
    second = TaskMemory(tmp_path / "state.json")
    second.open()
    second.close()


def test_an_unreadable_state_file_is_refused_not_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")

    with pytest.raises(CorruptState):
        TaskMemory(path).open()
    assert path.read_text() == "{not json"
