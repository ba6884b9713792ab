"""run.*: POST /run starts an action (202, a valid ActionStatus with proper
times); the same request again is a retry (200, the same action), the same
request_id with other content a conflict (409), a body the input schema
refuses a 400."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ap_client.check import spec
from ap_client.check.bodies import compact, example_bodies, invalid_body
from ap_client.check.outcomes import FAIL, PASS, WARN

if TYPE_CHECKING:
    from ap_client.check.checker import Checker


def check(checker: Checker, body: dict[str, Any]) -> dict[str, Any] | None:
    """The run.* checks; the first action's status (None: no action was started)."""
    request = checker.new_request(body, "first")
    checker.first_request = request
    status = _accepted(checker, request)
    if status is None:
        return None
    times = spec.time_problems(status)
    checker.record(
        "run.times", FAIL if times else PASS,
        f"{'; '.join(times)}" if times
        else "times are ISO 8601 with an offset, release_after an ISO 8601 duration",
    )
    _idempotent(checker, request, status)
    _conflict(checker, body, request)
    _invalid_body(checker, body)
    return status


def _accepted(checker: Checker, request: dict[str, Any]) -> dict[str, Any] | None:
    answer = checker.provider.call("POST", "/run", json=request)
    status = answer.document if isinstance(answer.document, dict) else None
    if status is not None and 200 <= answer.status < 300:
        checker.adopt(status)
    found = spec.problems(status, "ActionStatus") if status is not None else ["not JSON"]
    if answer.status == 202 and not found:
        checker.record("run.accepted", PASS, "POST /run: 202 and a valid ActionStatus")
    elif 200 <= answer.status < 300 and not found:
        checker.record(
            "run.accepted", WARN,
            f"POST /run: expected 202 for a new action, got {answer.status} "
            "(Globus Flows accepts any 2xx)",
        )
    else:
        detail = found[0] if 200 <= answer.status < 300 else ""
        checker.record(
            "run.accepted", FAIL,
            f"POST /run: expected 202 and a valid ActionStatus, got {answer.brief()}"
            + (f"; {detail}" if detail else ""),
        )
    if status is None or not isinstance(status.get("action_id"), str):
        return None
    return status


def _idempotent(checker: Checker, request: dict[str, Any], status: dict[str, Any]) -> None:
    again = checker.provider.call("POST", "/run", json=request)
    same = isinstance(again.document, dict) and again.document.get("action_id") == (
        status["action_id"]
    )
    if again.status == 200 and same:
        checker.record("run.idempotent", PASS, "the same request again: 200, same action_id")
        return
    if isinstance(again.document, dict) and 200 <= again.status < 300 and not same:
        checker.adopt(again.document)
    got = again.document.get("action_id") if isinstance(again.document, dict) else None
    checker.record(
        "run.idempotent", FAIL if not same else WARN,
        f"the same request again (a retry): expected 200 and action_id "
        f"{status['action_id']}, got {again.brief()} and action_id {got}",
    )


def _conflict(checker: Checker, body: dict[str, Any], request: dict[str, Any]) -> None:
    others = [b for b in example_bodies(checker.description.get("input_schema")) if b != body]
    if others:
        changed, what = {**request, "body": others[0]}, "another body"
    else:
        changed, what = {**request, "label": f"{request['label']} (changed)"}, "another label"
    answer = checker.provider.call("POST", "/run", json=changed)
    if 200 <= answer.status < 300 and isinstance(answer.document, dict):
        checker.adopt(answer.document)
    message = f"the same request_id with {what}: expected 409, got {answer.brief()}"
    if answer.status == 409 and answer.is_error_document():
        checker.record("run.conflict", PASS, message)
    elif answer.status >= 500 or (answer.status >= 400 and not answer.is_error_document()):
        checker.record("run.conflict", FAIL, message)
    else:
        checker.record("run.conflict", WARN, message + " (the spec does not require 409)")


def _invalid_body(checker: Checker, body: dict[str, Any]) -> None:
    wrong_body = invalid_body(checker.description.get("input_schema"), body)
    if wrong_body is None:
        checker.skip("run.invalid_body", "the input schema refuses no body we can make")
        return
    bad = checker.provider.call("POST", "/run", json=checker.new_request(wrong_body, "invalid"))
    if 200 <= bad.status < 300 and isinstance(bad.document, dict):
        checker.adopt(bad.document)
    good = bad.status == 400 and bad.is_error_document()
    checker.record(
        "run.invalid_body", PASS if good else FAIL,
        f"a body the input schema refuses ({compact(wrong_body)}): expected 400 JSON "
        f"{{code, description}}, got {bad.brief()}",
    )
