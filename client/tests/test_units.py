"""ap-client pieces without a server: poll policy, waiting loop, rendering."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import globus_sdk
import pytest
import requests

from ap_client import output
from ap_client.cli import _page_actions
from ap_client.waiting import MAX_DELAY, MAX_TRANSIENT_FAILURES, GaveUp, PollPolicy, Waiter

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def api_error(status: int, headers: dict[str, str] | None = None, body: Any = None):
    """A GlobusAPIError as the SDK raises it for a provider's error response."""
    response = requests.Response()
    response.status_code = status
    response.headers.update({"Content-Type": "application/json", **(headers or {})})
    response._content = json.dumps(body or {"code": "X", "description": "d"}).encode()
    response.request = requests.Request("GET", "http://127.0.0.1:1/a/status").prepare()
    return globus_sdk.GlobusAPIError(response)


def test_backoff_grows_to_a_cap_without_an_estimate():
    policy = PollPolicy()
    delays = [policy.next_delay(remaining=None) for _ in range(20)]
    assert delays[0] == 0.5
    assert all(a <= b for a, b in itertools.pairwise(delays))
    assert delays[-1] == MAX_DELAY


def test_backoff_wakes_just_after_the_estimate_then_starts_short_again():
    policy = PollPolicy()
    for _ in range(10):
        policy.next_delay(remaining=600)  # backed off to the cap
    assert policy.next_delay(remaining=600) == MAX_DELAY
    assert policy.next_delay(remaining=2.0) == pytest.approx(2.1)
    assert policy.next_delay(remaining=-0.01) == 0.5  # past the estimate: short again
    assert policy.next_delay(remaining=-1) == 1.0


def test_retry_after_wins():
    assert PollPolicy().next_delay(remaining=1.0, retry_after=7.0) == 7.0


class Recorder:
    def __init__(self) -> None:
        self.updates: list[str] = []
        self.sleeps: list[float] = []

    def update(self, status: dict[str, Any]) -> None:
        self.updates.append(status["status"])

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def status(state: str, eta_in: float = 5.0) -> dict[str, Any]:
    eta = (NOW + timedelta(seconds=eta_in)).isoformat()
    return {"action_id": "a", "status": state, "details": {"estimated_completion_time": eta}}


def test_waiter_retries_transient_errors_honouring_retry_after():
    answers: list[Any] = [
        api_error(503, {"Retry-After": "7"}),
        globus_sdk.GlobusConnectionError("down", ConnectionRefusedError()),
        status("ACTIVE"),
        status("SUCCEEDED"),
    ]

    def fetch() -> dict[str, Any]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    progress = Recorder()
    final = Waiter(fetch=fetch, progress=progress, now=lambda: NOW).wait(status("ACTIVE"))
    assert final["status"] == "SUCCEEDED"
    assert progress.sleeps[1] == 7.0  # after the 503
    assert progress.updates == ["ACTIVE", "ACTIVE", "SUCCEEDED"]


def test_waiter_raises_a_non_transient_error_at_once():
    calls = []

    def fetch() -> dict[str, Any]:
        calls.append(1)
        raise api_error(404, body={"code": "ActionNotFound", "description": "gone"})

    with pytest.raises(globus_sdk.GlobusAPIError):
        Waiter(fetch=fetch, progress=Recorder(), now=lambda: NOW).wait(status("ACTIVE"))
    assert len(calls) == 1


def test_waiter_gives_up_after_repeated_transient_errors():
    calls = []

    def fetch() -> dict[str, Any]:
        calls.append(1)
        raise api_error(502)

    with pytest.raises(GaveUp) as gave_up:
        Waiter(fetch=fetch, progress=Recorder(), now=lambda: NOW).wait(status("ACTIVE"))
    assert len(calls) == MAX_TRANSIENT_FAILURES == gave_up.value.attempts
    assert gave_up.value.error.http_status == 502


@pytest.mark.parametrize("state", ["SUCCEEDED", "FAILED", "INACTIVE"])
def test_waiter_stops_without_polling_on_a_final_or_inactive_status(state):
    def fetch() -> dict[str, Any]:
        raise AssertionError("must not poll")

    progress = Recorder()
    assert Waiter(fetch=fetch, progress=progress).wait(status(state))["status"] == state
    assert progress.sleeps == []


def test_api_error_line_carries_status_code_and_description():
    line = output.api_error_line(
        api_error(409, body={"code": "ActionConflict", "description": "already\n done"})
    )
    assert line == "409 ActionConflict: already done"
    assert output.api_error_line(api_error(503, {"Retry-After": "5"})).endswith(
        "(retry after 5 s)"
    )


def test_enumeration_pages_and_plain_lists():
    action = {"action_id": "a", "status": "ACTIVE"}
    assert _page_actions([action]) == [action]
    assert _page_actions({"actions": [action], "has_next_page": False}) == [action]
    table = output.render_actions([action, {"action_id": "bb", "status": "FAILED", "label": "x"}])
    assert table.splitlines()[0].split() == ["ACTION_ID", "STATUS", "START_TIME", "LABEL"]
    assert table.splitlines()[2].split() == ["bb", "FAILED", "x"]


def test_status_rendering_lists_fields_then_details():
    text = output.render_status(
        {"action_id": "a", "status": "SUCCEEDED", "details": {"whattimeisit": "t"}}
    )
    assert text.splitlines() == [
        "action_id  a",
        "status     SUCCEEDED",
        "details",
        "  whattimeisit  t",
    ]
