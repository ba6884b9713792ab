"""Waiting for the first action to complete (status.completes), then what a
completed action allows: cancelling it is refused (cancel.completed),
releasing it gives its final status (release.completed), after which it is
gone (release.gone) and its request_id starts a new action
(release.request_id_reusable)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ap_client.check.outcomes import FAIL, PASS, WARN, from_to
from ap_client.check.protocol import TERMINAL, path, retry_after, routes, status_problem

if TYPE_CHECKING:
    from ap_client.check.checker import Checker

FIRST_DELAY, MAX_DELAY, BACKOFF = 0.5, 5.0, 1.5


def wait(checker: Checker, action_id: str) -> dict[str, Any] | None:
    """status.completes: poll (with backoff, Retry-After honoured on 429 and 503)
    until the action completes or ``wait_seconds`` pass; its final status, or None."""
    deadline = time.monotonic() + checker.wait_seconds
    delay = FIRST_DELAY
    polls = 0
    while True:
        answer = checker.provider.call("GET", path(action_id, "status"))
        polls += 1
        if answer.status in (429, 503):
            retry = retry_after(answer)
            pause = retry if retry is not None else delay
        elif answer.status != 200 or status_problem(answer.document, action_id):
            problem = status_problem(answer.document, action_id) if answer.status == 200 else None
            checker.record(
                "status.completes", FAIL,
                f"polling the action: expected 200 and its status, got {answer.brief()}"
                + (f"; {problem}" if problem else ""),
            )
            return None
        else:
            status = answer.document
            checker.started[action_id] = status
            state = status.get("status")
            if state in TERMINAL:
                checker.record("status.completes", PASS, f"reached {state} after {polls} polls")
                return status
            if state == "INACTIVE":
                checker.record("status.completes", WARN,
                               "the action is INACTIVE: it waits for someone to act")
                return None
            pause = delay
        left = deadline - time.monotonic()
        if left <= 0:
            checker.record(
                "status.completes", WARN,
                f"still running after {checker.wait_seconds:g} s (check --timeout): "
                "not checked to the end",
            )
            return None
        checker.sleep(min(pause, left))
        delay = min(delay * BACKOFF, MAX_DELAY)


def check(checker: Checker, action_id: str, final: dict[str, Any] | None) -> None:
    """cancel.completed, then release.* (skipped when the action did not complete)."""
    if final is None:
        checker.skip(from_to("cancel.completed", "release.request_id_reusable"),
                     "the action did not complete (status.completes)")
        return
    answer = checker.provider.call("POST", path(action_id, "cancel"))
    checker.record(
        "cancel.completed", PASS if answer.status == 409 and answer.is_error_document()
        else FAIL,
        f"cancel of a completed action: expected 409 JSON, got {answer.brief()}",
    )
    if not _release(checker, action_id):
        checker.skip(("release.gone", "release.request_id_reusable"), "release.completed failed")
        return
    _gone(checker, action_id)
    _request_id_reusable(checker, action_id)


def _release(checker: Checker, action_id: str) -> bool:
    """release.completed; whether the provider released the action."""
    released = checker.provider.call("POST", path(action_id, "release"))
    problem = status_problem(released.document, action_id) if released.status == 200 else None
    if released.status == 200:
        checker.released.add(action_id)
    if problem is None and released.status == 200:
        state = released.document.get("status")
        problem = None if state in TERMINAL else f"status {state}, not a final one"
    checker.record(
        "release.completed", PASS if released.status == 200 and not problem else FAIL,
        f"release of a completed action: expected 200 and its final status, got "
        f"{released.brief()}" + (f"; {problem}" if problem else ""),
    )
    return released.status == 200


def _gone(checker: Checker, action_id: str) -> None:
    gone = [checker.provider.call(m, p) for m, p in routes(action_id)["status"]]
    wrong = [g for g in gone if not (g.status == 404 and g.is_error_document())]
    checker.record(
        "release.gone", FAIL if wrong else PASS,
        "status of a released action: expected 404 JSON on both paths"
        + (f", got {wrong[0].what}: {wrong[0].brief()}" if wrong else ""),
    )


def _request_id_reusable(checker: Checker, action_id: str) -> None:
    again = checker.provider.call("POST", "/run", json=checker.first_request)
    document = again.document if isinstance(again.document, dict) else {}
    if 200 <= again.status < 300:
        checker.adopt(document)
    new = document.get("action_id") not in (None, action_id)
    checker.record(
        "release.request_id_reusable", PASS if again.status == 202 and new else FAIL,
        f"its request_id again after release: expected 202 and a new action, got "
        f"{again.brief()}" + ("" if new or again.status >= 300 else " with the released id"),
    )
