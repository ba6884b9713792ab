"""What the Actions API says a provider answers, as the checks read it: the
routes of one action (each on its original and its /actions path), a missing
route told from a missing action, and a status document of a given action."""

from __future__ import annotations

from typing import Any

from ap_client.check.http import Answer, segment

TERMINAL = ("SUCCEEDED", "FAILED")


def routes(action_id: str) -> dict[str, list[tuple[str, str]]]:
    """Each operation on one action: its original path and its /actions path."""
    x = segment(action_id)
    return {
        "status": [("GET", f"/{x}/status"), ("GET", f"/actions/{x}")],
        "cancel": [("POST", f"/{x}/cancel"), ("POST", f"/actions/{x}/cancel")],
        "release": [("POST", f"/{x}/release"), ("DELETE", f"/actions/{x}")],
        "resume": [("POST", f"/{x}/resume"), ("POST", f"/actions/{x}/resume")],
        "log": [("GET", f"/{x}/log"), ("GET", f"/actions/{x}/log")],
    }


def path(action_id: str, operation: str) -> str:
    """The original path of ``operation`` on the action (e.g. /ID/cancel)."""
    return routes(action_id)[operation][0][1]


def route_missing(answer: Answer) -> bool:
    """The provider has no such route (as opposed to: no such action)."""
    return answer.status in (404, 405) and answer.error_code() != "ActionNotFound"


def status_problem(document: Any, action_id: str) -> str | None:
    """Why ``document`` is not a status of ``action_id`` (None: it is). Whether it is
    fully spec-valid is run.accepted's check, so it is reported once."""
    if not isinstance(document, dict):
        return "not a JSON object"
    if document.get("action_id") != action_id:
        return f"action_id {document.get('action_id')!r}, not {action_id!r}"
    state = document.get("status")
    if state not in ("ACTIVE", "INACTIVE", *TERMINAL):
        return f"status {state!r} is none of ACTIVE, INACTIVE, SUCCEEDED, FAILED"
    return None


def action_ids(document: Any) -> list[str] | None:
    """The action ids of an enumeration answer (a page or a plain list); None: neither."""
    items = document.get("actions") if isinstance(document, dict) else document
    if not isinstance(items, list):
        return None
    return [a["action_id"] for a in items if isinstance(a, dict) and "action_id" in a]


def retry_after(answer: Answer) -> float | None:
    """Its Retry-After in seconds, within 0..30 (None: none, or not a number)."""
    try:
        return min(max(float(answer.headers.get("Retry-After", "")), 0.0), 30.0)
    except ValueError:
        return None
