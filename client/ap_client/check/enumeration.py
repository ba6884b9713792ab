"""enumerate.*: GET /actions lists the caller's action, and paging with
limit=1 and marker reaches every action once (skipped where the provider
does not enumerate, or does not page)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ap_client.check.http import A, Answer
from ap_client.check.outcomes import FAIL, PASS
from ap_client.check.protocol import action_ids, route_missing

if TYPE_CHECKING:
    from ap_client.check.checker import Checker

MAX_PAGES = 100


def list_actions(checker: Checker, caller: str, **params: Any) -> Answer:
    """GET /actions as ``caller``, actions in every state."""
    return checker.provider.call(
        "GET", "/actions", caller=caller,
        params={"status": "active,inactive,succeeded,failed", **params},
    )


def check(checker: Checker, action_id: str, second: dict[str, Any] | None) -> None:
    answer = list_actions(checker, A)
    if route_missing(answer):
        checker.skip(("enumerate.lists", "enumerate.paging"),
                     f"the provider does not enumerate (GET /actions: {answer.brief()})")
        return
    listed = action_ids(answer.document)
    if answer.status != 200 or listed is None:
        checker.record("enumerate.lists", FAIL,
                       f"GET /actions: expected 200 and a page of actions, got {answer.brief()}")
        checker.skip("enumerate.paging", "enumerate.lists failed")
        return
    if action_id in listed:
        checker.record("enumerate.lists", PASS, "GET /actions lists the action just started")
    else:
        checker.record(
            "enumerate.lists", FAIL,
            f"GET /actions: expected the action just started in the list, got "
            f"{len(listed)} actions without it",
        )
    if not isinstance(answer.document, dict) or "has_next_page" not in answer.document:
        checker.skip("enumerate.paging", "GET /actions has no paging (no has_next_page)")
        return
    _paging(checker, {action_id} | ({second["action_id"]} if second else set()))


def _paging(checker: Checker, wanted: set[str]) -> None:
    seen: list[str] = []
    marker = None
    problem = None
    pages = 0
    for pages in range(1, MAX_PAGES + 1):  # noqa: B007 (the count is reported)
        page = list_actions(checker, A, limit=1, **({"marker": marker} if marker else {}))
        ids = action_ids(page.document)
        if page.status != 200 or ids is None:
            problem = f"a page answered {page.brief()}"
            break
        if len(ids) > 1:
            problem = f"limit=1 gave {len(ids)} actions"
            break
        seen += ids
        marker = page.document.get("marker")
        if not page.document.get("has_next_page") or not marker:
            break
    missing = wanted - set(seen)
    if problem is None and missing:
        problem = f"pages without {sorted(missing)[0]}"
    if problem is None and len(seen) != len(set(seen)):
        problem = "an action came twice"
    if problem:
        checker.record(
            "enumerate.paging", FAIL,
            f"paging GET /actions (limit=1, marker): expected each action once, got {problem}",
        )
    else:
        checker.record(
            "enumerate.paging", PASS, f"paging GET /actions (limit=1, marker): {pages} pages"
        )
