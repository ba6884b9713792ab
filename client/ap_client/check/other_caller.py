"""other.*: with --other-token, a second caller gets 404 for the first
caller's action on every route and path (not 401 or 403: it must not learn
the action exists), and does not see it in GET /actions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ap_client.check.enumeration import list_actions
from ap_client.check.http import B
from ap_client.check.outcomes import FAIL, PASS
from ap_client.check.protocol import action_ids, route_missing, routes

if TYPE_CHECKING:
    from ap_client.check.checker import Checker


def check(checker: Checker, action_id: str, second: dict[str, Any] | None) -> None:
    if not checker.has_other:
        checker.skip(("other.isolation", "other.enumerate"), "no --other-token given")
        return
    _isolation(checker, second["action_id"] if second else action_id)
    _enumerate(checker)


def _isolation(checker: Checker, target: str) -> None:
    wrong = []
    calls = [r for name, paths in routes(target).items() for r in paths
             if name != "log" or checker.description.get("log_supported") is True]
    for method, path in calls:
        answer = checker.provider.call(method, path, caller=B)
        if answer.status == 404 and answer.error_code() != "NotFound":
            continue
        if route_missing(answer) and "resume" in path:
            continue
        wrong.append(f"{answer.what}: {answer.brief()}")
    who = "the other caller, on another's action"
    if wrong:
        checker.record(
            "other.isolation", FAIL,
            f"{who}: expected 404 on every route, got {wrong[0]}"
            + (f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""),
        )
    else:
        checker.record("other.isolation", PASS, f"{who}: 404 on all {len(calls)} routes")


def _enumerate(checker: Checker) -> None:
    answer = list_actions(checker, B)
    if route_missing(answer):
        checker.skip("other.enumerate", "the provider does not enumerate")
        return
    listed = action_ids(answer.document)
    if answer.status != 200 or listed is None:
        checker.record("other.enumerate", FAIL,
                       f"GET /actions as the other caller: expected 200, got {answer.brief()}")
        return
    theirs = set(listed) & set(checker.started)
    checker.record(
        "other.enumerate", FAIL if theirs else PASS,
        "the other caller's GET /actions lists none of our actions"
        if not theirs
        else f"the other caller's GET /actions: expected none of ours, got {sorted(theirs)[0]}",
    )
