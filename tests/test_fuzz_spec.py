"""Schemathesis fuzzes the real app (in-process WSGI, dev-mode tokens, the
library's auth path) against the official Actions API spec.

Checks on every generated request: no server error, the response conforms to
the spec's schema for its status code, the Content-Type is the declared one;
and the same request without a token or with a bad token is a JSON 401 (an
OPTIONS request, which never carries credentials, is answered without one and
with an empty body). schemathesis's own ``ignored_auth`` check skips OAuth2
security schemes, which is what the spec declares, hence the explicit probes.

The one deliberate difference from the spec (see DESIGN.md): introspection's
``visible_to`` is ``["all_authenticated_users"]``, which the spec's
PrincipalURN_or_public pattern rejects. The spec is widened by exactly that one
value on that one field; every other field and check stays as the spec says.

Bounded: fixed example counts, derandomized (the same cases every run).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)
from werkzeug.exceptions import HTTPException

from app import create_app
from app.validation import SPEC_PATH, load_input_schema

# Fixed in CI; FUZZ_EXAMPLES=1000 scripts/test -k fuzz digs deeper by hand.
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
TOKEN = {"Authorization": "Bearer dev-token-fuzzer"}
BAD_AUTH = [
    {},
    {"Authorization": "Bearer dev-token-"},  # an empty name: inactive
    {"Authorization": "Bearer not-a-dev-token-at-all"},
    {"Authorization": "Basic ZnV6emVyOmZ1enplcg=="},
]
LOOPBACK = {"environ_base": {"REMOTE_ADDR": "127.0.0.1"}}  # dev mode serves loopback only
DELAY = 10  # seconds every action runs, on the fake clock below


class SteppedClock:
    """A clock the test moves, so cases see ACTIVE and completed actions."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def official_spec() -> dict:
    spec = yaml.safe_load(SPEC_PATH.read_text())
    visible_to = spec["components"]["schemas"]["ProviderDescription"]["properties"]["visible_to"]
    # The one deliberate difference: also allow "all_authenticated_users".
    visible_to["items"] = {
        "anyOf": [visible_to["items"], {"type": "string", "enum": ["all_authenticated_users"]}]
    }
    return spec


def spec_with_input_schema() -> dict:
    """The spec with ``body`` as introspection publishes it (schema.json), so
    that generated run requests are mostly valid and reach the 200/202 paths."""
    spec = official_spec()
    body = {
        k: v for k, v in load_input_schema().items() if k not in ("$schema", "title", "examples")
    }
    body["properties"] = copy.deepcopy(body["properties"])
    body["properties"]["utc_offset"].pop("examples", None)
    spec["components"]["schemas"]["ActionRequest"]["properties"]["body"] = body
    return spec


clock = SteppedClock()
app = create_app(
    {"AUTH_MODE": "dev", "MIN_DELAY_SECONDS": DELAY, "MAX_DELAY_SECONDS": DELAY}, clock=clock
)
official = schemathesis.openapi.from_dict(official_spec())
official.app = app
with_input = schemathesis.openapi.from_dict(spec_with_input_schema()).include(path="/run")
with_input.app = app


def real_action_id(case_id: str) -> str | None:
    """For about two thirds of the cases with an action_id, a real action of
    the fuzzer's (half of them completed); the others keep the generated id."""
    choice = hashlib.blake2b(case_id.encode(), digest_size=1).digest()[0] % 3
    if choice == 0:
        return None
    client = app.test_client()
    request = {"request_id": str(uuid.uuid4()), "body": {"utc_offset": 1}}
    action_id = client.post("/run", headers=TOKEN, json=request).json["action_id"]
    if choice == 2:
        clock.now += timedelta(seconds=DELAY)
    return action_id


def routes(response) -> bool:
    """Whether the request reaches a view (no 404/405 from routing, which is
    decided before the token is checked)."""
    url = response.request.url
    path = url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
    try:
        app.url_map.bind("localhost").match("/" + path, response.request.method)
    except HTTPException:
        return False
    return True


def exercise(case) -> None:
    if case.path_parameters and "action_id" in case.path_parameters:
        seed = json.dumps(case.path_parameters["action_id"]) + case.method + case.path
        replacement = real_action_id(seed)
        if replacement is not None:
            case.path_parameters["action_id"] = replacement
    assert "authorization" not in {h.lower() for h in (case.headers or {})}
    response = case.call(headers=TOKEN, **LOOPBACK)
    case.validate_response(response, checks=CHECKS)
    if case.method.upper() == "OPTIONS":
        # Preflight requests carry no credentials: answered without a token,
        # and so without a body that says anything about the request.
        for headers in BAD_AUTH:
            probe = case.call(headers=headers, **LOOPBACK)
            assert probe.status_code in (200, 204) and probe.content == b"", probe.text
    elif routes(response):
        for headers in BAD_AUTH:
            probe = case.call(headers=headers, **LOOPBACK)
            sent = probe.request
            assert probe.status_code == 401, (sent.method, sent.url, sent.headers, probe.text)
            assert probe.headers["content-type"] == ["application/json"]
            assert set(probe.json()) == {"code", "description"}
    clock.now += timedelta(seconds=1)


FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@official.parametrize()
@FUZZ
def test_official_spec(case):
    exercise(case)


@with_input.parametrize()
@FUZZ
def test_run_with_the_published_input_schema(case):
    exercise(case)


def test_only_visible_to_differs_from_the_official_spec():
    original = yaml.safe_load(SPEC_PATH.read_text())
    patched = official_spec()
    path = ("components", "schemas", "ProviderDescription", "properties", "visible_to")
    for document in (original, patched):
        node = document
        for key in path[:-1]:
            node = node[key]
        node.pop(path[-1])
    assert patched == original


# The list routes are not in the official spec; their query strings get the
# same treatment: any value is a 200 or a JSON 400, never a server error.
QUERY_VALUE = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["active", "SUCCEEDED,failed", "creator_id,manage_by", "0", "200", "MQ"]),
)


@given(
    path=st.sampled_from(["/actions", "/actions/{id}/log", "/{id}/log"]),
    params=st.dictionaries(
        st.sampled_from(["status", "roles", "limit", "marker"]), QUERY_VALUE, max_size=4
    ),
)
@FUZZ
def test_list_queries_are_200_or_json_400(path, params):
    client = app.test_client()
    action_id = client.post(
        "/run", headers=TOKEN, json={"request_id": str(uuid.uuid4()), "body": {"utc_offset": 1}}
    ).json["action_id"]
    response = client.get(path.format(id=action_id), headers=TOKEN, query_string=params)
    assert response.status_code in (200, 400), response.json
    assert response.is_json
    if response.status_code == 400:
        assert response.json["code"] == "BadActionRequest"
    else:
        assert {"limit", "has_next_page", "marker"} <= set(response.json)
