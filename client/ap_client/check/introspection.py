"""introspect.*: GET / describes the provider (a valid ProviderDescription),
answers without a token as its visible_to says, and allows a CORS preflight
(the Globus web app calls providers from the browser)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ap_client.check import spec
from ap_client.check.outcomes import FAIL, PASS

if TYPE_CHECKING:
    from ap_client.check.checker import Checker


def check(checker: Checker) -> None:
    provider = checker.provider
    answer = provider.call("GET", "/")
    if answer.status == 200 and isinstance(answer.document, dict):
        checker.description = answer.document
        checker.record("introspect.ok", PASS, "GET / answered 200 with a JSON object")
        found = spec.problems(answer.document, "ProviderDescription")
        if found:
            checker.record("introspect.schema", FAIL, _first("ProviderDescription", found))
        else:
            checker.record("introspect.schema", PASS, "a valid ProviderDescription")
    else:
        checker.record(
            "introspect.ok", FAIL, f"expected 200 and a JSON object from GET /, got "
            f"{answer.brief()}{'' if answer.status != 200 else ' (not an object)'}",
        )
        checker.skip("introspect.schema", "introspect.ok failed")

    public = "public" in (checker.description.get("visible_to") or [])
    anonymous = provider.call("GET", "/", caller=None)
    if public:
        good = anonymous.status == 200
        expected = "200 (visible_to includes public)"
    else:
        good = anonymous.status == 401 and anonymous.is_error_document()
        expected = "401 JSON {code, description} (visible_to has no public)"
    checker.record(
        "introspect.no_token", PASS if good else FAIL,
        f"GET / without a token: expected {expected}, got {anonymous.brief()}",
    )

    preflight = provider.call(
        "OPTIONS", "/", caller=None,
        headers={"Origin": "https://app.globus.org", "Access-Control-Request-Method": "GET"},
    )
    allow = preflight.headers.get("Access-Control-Allow-Origin")
    good = 200 <= preflight.status < 300 and allow in ("*", "https://app.globus.org")
    checker.record(
        "introspect.cors", PASS if good else FAIL,
        f"OPTIONS / (CORS preflight): expected 2xx with Access-Control-Allow-Origin, "
        f"got {preflight.brief()}, Access-Control-Allow-Origin {allow or 'missing'}",
    )


def _first(schema: str, found: list[str]) -> str:
    more = f" (and {len(found) - 2} more)" if len(found) > 2 else ""
    return f"expected a valid {schema}, got {'; '.join(found[:2])}{more}"
