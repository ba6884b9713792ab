"""Checks on an action while it runs: its two status paths agree
(status.paths), releasing it is refused (release.running), resume and log
answer where the provider has them (resume.running, log.supported), and
cancelling it works (cancel.running, on a second action)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ap_client.check.outcomes import FAIL, PASS
from ap_client.check.protocol import TERMINAL, path, route_missing, routes, status_problem

if TYPE_CHECKING:
    from ap_client.check.checker import Checker


def check(checker: Checker, action_id: str) -> None:
    """status.paths, release.running, resume.running and log.supported, in that order."""
    _status_paths(checker, action_id)
    _release(checker, action_id)
    _resume(checker, action_id)
    _log(checker, action_id)


def check_cancel(checker: Checker, second: dict[str, Any] | None) -> None:
    """cancel.running, on the second action (the first one is left to complete)."""
    if second is None:
        checker.skip("cancel.running", "a second action could not be started")
        return
    action_id = second["action_id"]
    if not checker.running(action_id):
        checker.skip("cancel.running", "the action completed before it could be cancelled")
        return
    answer = checker.provider.call("POST", path(action_id, "cancel"))
    if answer.status == 200:
        problem = status_problem(answer.document, action_id)
        good, got = not problem, "200" + (f" but {problem}" if problem else "")
    else:
        good, got = answer.status == 409 and answer.is_error_document(), answer.brief()
    checker.record(
        "cancel.running", PASS if good else FAIL,
        f"cancel of a running action: expected 200 (its status) or 409, got {got}",
    )


def _status_paths(checker: Checker, action_id: str) -> None:
    answers = [checker.provider.call(m, p) for m, p in routes(action_id)["status"]]
    problems = [
        f"{a.what}: {a.brief() if a.status != 200 else 'not a JSON object'}"
        for a in answers
        if a.status != 200 or not isinstance(a.document, dict)
    ]
    if not problems:
        old, new = (a.document for a in answers)
        for key in ("action_id", "creator_id"):
            if old.get(key) != new.get(key):
                problems.append(f"{key} {old.get(key)!r} vs {new.get(key)!r}")
        # Between the two reads, the action may have completed; nothing else.
        if old.get("status") != new.get("status") and new.get("status") not in TERMINAL:
            problems.append(f"status {old.get('status')} vs {new.get('status')}")
    if problems:
        checker.record(
            "status.paths", FAIL,
            "GET /ID/status and GET /actions/ID: expected the same action, got "
            + "; ".join(problems[:2]),
        )
    else:
        checker.started[action_id] = answers[-1].document
        checker.record("status.paths", PASS, "GET /ID/status and GET /actions/ID agree")


def _release(checker: Checker, action_id: str) -> None:
    if not checker.running(action_id):
        checker.skip("release.running", "the action completed before it could be released")
        return
    answer = checker.provider.call("POST", path(action_id, "release"))
    if answer.status == 200:
        checker.released.add(action_id)
    good = answer.status == 409 and answer.is_error_document()
    still = checker.running(action_id)
    if answer.status == 200 and still is False:  # it finished meanwhile: fair
        checker.skip("release.running", "the action completed while being released")
        return
    checker.record(
        "release.running", PASS if good else FAIL,
        f"release of a running action: expected 409 JSON, got {answer.brief()}",
    )


def _resume(checker: Checker, action_id: str) -> None:
    running = checker.running(action_id)
    answers = [checker.provider.call(m, p) for m, p in routes(action_id)["resume"]]
    if all(route_missing(a) for a in answers):
        checker.skip(
            "resume.running",
            f"the provider has no resume (POST /ID/resume answered {answers[0].brief()})",
        )
        return
    wrong = []
    for answer in answers:
        if answer.status == 200 and not status_problem(answer.document, action_id):
            continue
        if answer.status == 409 and answer.is_error_document() and running is not True:
            continue  # resuming a completed action
        wrong.append(f"{answer.what}: {answer.brief()}")
    checker.record(
        "resume.running", FAIL if wrong else PASS,
        "resume of a running action: expected 200 and its status"
        + (f", got {wrong[0]}" if wrong else " on both paths"),
    )


def _log(checker: Checker, action_id: str) -> None:
    if checker.description.get("log_supported") is not True:
        checker.skip("log.supported", "log_supported is not true")
        return
    wrong = []
    for method, log_path in routes(action_id)["log"]:
        answer = checker.provider.call(method, log_path)
        entries = answer.document.get("entries") if isinstance(answer.document, dict) else None
        if answer.status != 200 or not isinstance(entries, list):
            wrong.append(f"{answer.what}: {answer.brief()}")
    checker.record(
        "log.supported", FAIL if wrong else PASS,
        "log_supported is true: expected 200 with a list of entries"
        + (f", got {wrong[0]}" if wrong else " on both paths"),
    )
