"""The shared task-protocol cases (plugin/test/protocol-cases.json) against the reference client's rules.

The browser extension runs the very same file in `npm test` (plugin/test/protocol.test.js): both plugins
must send the same Vinted requests for a task, report the same result and take the same pause.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ops.tools.plugin_client.errors import UnresolvedReference
from ops.tools.plugin_client.rules import (
    BackoffPolicy,
    Penalty,
    SendWindow,
    flatten_form,
    interrupted_result,
    is_success,
    judge,
    penalty_of,
    prepare_request,
    retry_after_seconds,
    send_window_from,
)

CASES = json.loads(
    (Path(__file__).resolve().parents[2] / "plugin" / "test" / "protocol-cases.json").read_text("utf-8")
)


def _run(case: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any] | None]:
    """Play a task against Vinted's scripted answers as the client's runner does."""
    answers = list(case["vinted"])
    responses: list[dict[str, Any]] = []
    sent: list[dict[str, Any]] = []
    local_error: dict[str, str] | None = None
    pause: dict[str, Any] | None = None
    streak = int(case.get("streak", 0))
    for request in case["requests"]:
        try:
            prepared = prepare_request(request, responses)
        except UnresolvedReference as exc:
            local_error = {"code": "unresolved_reference", "message": str(exc)}
            break
        upload = prepared.upload
        sent.append(
            {
                "method": prepared.method,
                "path": prepared.path,
                "json": prepared.json,
                "upload": None
                if upload is None
                else {
                    "fields": [list(f) for f in upload.fields],
                    "file_field": upload.file_field,
                    "url": upload.url,
                },
            }
        )
        answer = answers.pop(0)
        headers = answer.get("headers", {})
        responses.append({"http_status": answer["http_status"], "body": answer["body"]})
        penalty = penalty_of(answer["http_status"], headers, answer["body"])
        if penalty is not None:
            retry_after = retry_after_seconds(
                next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
            )
            seconds = BackoffPolicy().seconds(penalty, streak, retry_after)
            pause = {"penalty": str(penalty), "seconds": seconds}
        if not is_success(answer["http_status"]):
            break
    assert not answers, "every scripted Vinted answer is used"
    return sent, judge(responses, len(case["requests"]), local_error), pause


def _same_result(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert got["status"] == expected["status"]
    assert got["responses"] == expected["responses"]
    if "error" in expected:
        # A case may fix only the code where the wording is the implementation's (a $ref's reason).
        assert {key: got["error"][key] for key in expected["error"]} == expected["error"]
    else:
        assert "error" not in got


@pytest.mark.parametrize("case", CASES["tasks"], ids=[case["name"] for case in CASES["tasks"]])
def test_task_case(case: dict[str, Any]) -> None:
    sent, result, pause = _run(case)
    assert sent == case["sent"]
    _same_result(result, case["result"])
    assert pause == case["pause"]


@pytest.mark.parametrize("case", CASES["forms"], ids=[case["name"] for case in CASES["forms"]])
def test_form_case(case: dict[str, Any]) -> None:
    assert [list(field) for field in flatten_form(case["body"])] == case["fields"]


@pytest.mark.parametrize("case", CASES["interrupted"], ids=[case["name"] for case in CASES["interrupted"]])
def test_interrupted_case(case: dict[str, Any]) -> None:
    _same_result(interrupted_result(case["responses"], case["request_count"]), case["result"])


@pytest.mark.parametrize("case", CASES["windows"], ids=[case["name"] for case in CASES["windows"]])
def test_window_case(case: dict[str, Any]) -> None:
    window = SendWindow(case["limit"], case["seconds"])
    assert window.seconds_until_room(case["sends"], case["now"], case["needed"]) == case["wait"]


@pytest.mark.parametrize(
    "case", CASES["window_answers"], ids=[case["name"] for case in CASES["window_answers"]]
)
def test_window_answer_case(case: dict[str, Any]) -> None:
    window = send_window_from(case["body"])
    expected = case["window"]
    assert (None if window is None else {"limit": window.limit, "seconds": window.seconds}) == expected


def test_the_cases_cover_both_penalties_and_every_result_kind() -> None:
    pauses = {case["pause"]["penalty"] for case in CASES["tasks"] if case["pause"]}
    assert pauses == {str(Penalty.RATE_LIMITED), str(Penalty.CHALLENGE)}
    codes = {case["result"].get("error", {}).get("code") for case in CASES["tasks"]}
    assert {None, "vinted_error", "rate_limited", "antibot_challenge", "network_error"} <= codes
