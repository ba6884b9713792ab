"""auth.*: every route, without a token or with an invalid one, is 401 with a
JSON {code, description} (routes the provider does not have are left out)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from ap_client.check.outcomes import FAIL, PASS
from ap_client.check.protocol import route_missing, routes

if TYPE_CHECKING:
    from ap_client.check.checker import Checker

BAD_TOKEN = "ap-client-check-not-a-valid-token"  # noqa: S105 (a deliberately wrong token)


def check(checker: Checker) -> None:
    for check_id, token, what in (
        ("auth.no_token", None, "without a token"),
        ("auth.bad_token", BAD_TOKEN, "with an invalid token"),
    ):
        wrong = []
        checked = 0
        for method, path, document in _every_route():
            answer = checker.provider.call(method, path, caller=None, token=token, json=document)
            if route_missing(answer) and answer.status != 401:
                continue  # the provider has no such route (e.g. no /resume)
            checked += 1
            if 200 <= answer.status < 300 and isinstance(answer.document, dict):
                checker.adopt(answer.document)  # it started one anyway: clean it up
            if not (answer.status == 401 and answer.is_error_document()):
                wrong.append(f"{answer.what}: {answer.brief()}")
        if wrong:
            checker.record(
                check_id, FAIL,
                f"{what}, expected 401 JSON {{code, description}} on every route; "
                f"{len(wrong)} of {checked} did not, e.g. {wrong[0]}",
            )
        else:
            checker.record(check_id, PASS, f"{what}: 401 JSON on all {checked} routes")


def _every_route() -> list[tuple[str, str, Any]]:
    """(method, path, JSON body) of every route, on a made-up action id."""
    fake = f"ap-client-check-{uuid.uuid4()}"
    calls: list[tuple[str, str, Any]] = [
        ("POST", "/run", {"request_id": f"ap-client-check-{uuid.uuid4()}", "body": {}}),
        ("POST", "/actions", {"request_id": f"ap-client-check-{uuid.uuid4()}", "body": {}}),
        ("GET", "/actions", None),
    ]
    for paths in routes(fake).values():
        calls += [(method, path, None) for method, path in paths]
    return calls
