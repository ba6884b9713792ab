"""unknown.action: an action id the provider never gave out is 404 JSON on
both status paths (not a 500, not an empty 200)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from ap_client.check.outcomes import FAIL, PASS
from ap_client.check.protocol import routes

if TYPE_CHECKING:
    from ap_client.check.checker import Checker


def check(checker: Checker) -> None:
    fake = f"ap-client-check-unknown-{uuid.uuid4()}"
    wrong = []
    for method, path in routes(fake)["status"]:
        answer = checker.provider.call(method, path)
        if not (answer.status == 404 and answer.is_error_document()):
            wrong.append(f"{answer.what}: {answer.brief()}")
    checker.record(
        "unknown.action", FAIL if wrong else PASS,
        "an unknown action id: expected 404 JSON on both paths"
        + (f", got {wrong[0]}" if wrong else ""),
    )
