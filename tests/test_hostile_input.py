"""Property-based: arbitrary methods, paths, headers, bytes and JSON at every
route. Never a 5xx; every error is the JSON {code, description}; no response
reveals the private result of a running action or another user's action.

Dev mode (local introspection, the library's AuthState) keeps it fast; the
clock never moves, so every action stays ACTIVE and its result stays private.
"""

from __future__ import annotations

import json
import random
import string
from urllib.parse import quote, unquote_to_bytes

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from app import create_app
from app.paging import encode_marker
from app.testing import FakeClock
from tests.helpers import DEV_ALICE as ALICE
from tests.helpers import DEV_BOB as BOB

BOB_LABEL = "bob-private-label"
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
SETTINGS = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class World:
    """One app, alice's and bob's running actions, and what must never leak."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.app = create_app(
            {"AUTH_MODE": "dev", "FAILURE_RATE": 0.0, "LOG_LEVEL": "WARNING"},
            clock=self.clock, rng=random.Random(3),
        )
        self.client = self.app.test_client()
        self.store = self.app.extensions["store"]
        started = self.client.post(
            "/run", headers=ALICE, json={"request_id": "a", "body": {"utc_offset": 5.5}}
        )
        self.alice_action = started.json["action_id"]
        by_bob = self.client.post(
            "/run", headers=BOB,
            json={"request_id": "b", "body": {"utc_offset": -3}, "label": BOB_LABEL},
        )
        self.bob_action = by_bob.json["action_id"]
        self.seen_actions = {self.alice_action, self.bob_action}

    def private_results(self) -> list[str]:
        """Results of actions that are still running (all of them: time stands still)."""
        results = []
        for action_id in self.seen_actions:
            record = self.store.get(action_id)
            if record is not None and record.result and not record.result.endswith("+00:00"):
                results.append(record.result)  # a +00:00 result could equal start_time
        return results

    def check(self, response, method: str) -> None:
        if currently_in_test_context():  # see: pytest --hypothesis-show-statistics
            event(f"status {response.status_code}")
        body = response.get_data(as_text=True)
        assert response.status_code < 500, body
        assert response.headers.get("X-Request-ID")
        if response.status_code >= 400 and method != "HEAD":
            assert response.is_json, body
            assert set(response.json) == {"code", "description"}, body
        document = response.get_json(silent=True)
        if isinstance(document, dict) and "action_id" in document:
            self.seen_actions.add(document["action_id"])
            if document.get("status") == "ACTIVE":
                assert "whattimeisit" not in document.get("details", {})
        assert BOB_LABEL not in body
        if 200 <= response.status_code < 300:
            assert self.bob_action not in body
        for result in self.private_results():
            assert result not in body


@pytest.fixture(scope="module")
def world() -> World:
    return World()


# --- strategies -------------------------------------------------------------------------
latin1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f")
segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#"),
    min_size=0, max_size=40,
)
header_name = st.one_of(
    st.sampled_from([
        "Authorization", "Content-Type", "Content-Encoding", "Transfer-Encoding",
        "X-Request-ID", "X-Forwarded-For", "Accept", "Cookie", "Expect", "Range",
    ]),
    st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True),
)
authorization = st.one_of(
    st.just(ALICE),
    st.just({}),
    st.builds(lambda v: {"Authorization": v}, st.text(latin1, max_size=300)),
    st.builds(lambda v: {"Authorization": f"Bearer dev-token-{v}"}, st.text(latin1, max_size=80)),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=15), children, max_size=5),
    max_leaves=20,
)
bodies = st.one_of(
    st.none(),
    st.binary(max_size=500),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.just(b"{" * 5000),  # nested too deeply
    st.just(b"[" + b"1," * 40_000 + b"1]"),  # over the 64 KiB limit
)


offsets = st.one_of(
    st.floats(min_value=-13, max_value=15),
    st.integers(min_value=-13, max_value=15),
    st.from_regex(r"[+-]?[0-9]{1,2}(:[0-9]{2}|\.[0-9]{1,3})?", fullmatch=True),
    st.text(max_size=8),
)


@st.composite
def paths(draw, world_ids: tuple[str, str]) -> str:
    kind = draw(st.sampled_from(["route", "action", "anything"]))
    if kind == "route":
        return draw(st.sampled_from(["/", "/run", "/healthz", "/metrics"]))
    if kind == "action":
        action_id = draw(st.one_of(st.sampled_from(world_ids), segment))
        verb = draw(st.one_of(st.sampled_from(["status", "cancel", "resume", "release"]), segment))
        return f"/{quote(action_id, safe='')}/{quote(verb, safe='')}"
    return "/" + "/".join(quote(s, safe="") for s in draw(st.lists(segment, max_size=4)))


# --- properties -------------------------------------------------------------------------
@SETTINGS
@given(data=st.data())
def test_arbitrary_requests_at_every_route(world, data):
    method = data.draw(st.sampled_from(METHODS))
    path = data.draw(paths((world.alice_action, world.bob_action)))
    headers = data.draw(st.dictionaries(header_name, st.text(latin1, max_size=100), max_size=5))
    headers.update(data.draw(authorization))
    body = data.draw(bodies)
    # PATH_INFO as a WSGI server passes it: the decoded bytes, as latin-1.
    path_info = unquote_to_bytes(path).decode("latin-1")
    response = world.client.open(
        "/", method=method, headers=headers, data=body,
        environ_overrides={"PATH_INFO": path_info, "RAW_URI": path, "REQUEST_URI": path},
    )
    world.check(response, method)


@SETTINGS
@given(
    document=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "request_id": st.one_of(st.text(min_size=1, max_size=300), json_values),
                "body": st.one_of(
                    st.fixed_dictionaries({"utc_offset": offsets}),
                    st.fixed_dictionaries({"utc_offset": json_values}),
                    json_values,
                ),
            },
            optional={
                "label": st.one_of(st.text(max_size=80), json_values),
                "monitor_by": st.one_of(st.lists(st.text(max_size=60), max_size=3), json_values),
                "manage_by": st.one_of(st.lists(st.text(max_size=60), max_size=3), json_values),
                "deadline": st.one_of(st.text(max_size=40), json_values),
                "release_after": st.one_of(
                    st.sampled_from(["P1D", "PT1S", "P1Y", "P-1D", "P100D", "PT0S"]), json_values
                ),
                "allowed_clients": json_values,
                "tags": json_values,
            },
        ).flatmap(
            lambda known: st.dictionaries(
                st.text(string.ascii_letters, max_size=10), json_values, max_size=2
            ).map(lambda unknown: {**unknown, **known})
        ),
    )
)
def test_arbitrary_run_requests(world, document):
    response = world.client.post("/run", headers=ALICE, data=json.dumps(document))
    world.check(response, "POST")
    if response.status_code in (200, 202):  # then it was a real action: follow it
        action_id = response.json["action_id"]
        for path in (f"/{action_id}/status", f"/{action_id}/release"):
            method = "GET" if path.endswith("status") else "POST"
            world.check(world.client.open(path, method=method, headers=ALICE), method)


def test_the_properties_can_fail(world):
    """The checker itself catches a leak (so the properties above mean something)."""
    leaked = world.private_results()[0]
    response = world.app.response_class(json.dumps({"x": leaked}), status=200)
    response.headers["X-Request-ID"] = "x"
    with pytest.raises(AssertionError):
        world.check(response, "GET")


def test_nul_characters_are_4xx_on_every_store(store_url):
    """A NUL (%00 in a URL, \\u0000 in JSON) was a 500 on PostgreSQL, which
    cannot hold one in text: on every store it is a 404 or a 400."""
    app = create_app(
        {"AUTH_MODE": "dev", "STORE_URL": store_url, "LOG_LEVEL": "CRITICAL"},
        clock=FakeClock(),
    )
    try:
        _check_nul_refused(app.test_client())
    finally:
        app.extensions["store"].close()


def _check_nul_refused(client) -> None:
    for method, path in [
        ("GET", "/%00/status"), ("GET", "/actions/%00"), ("GET", "/%00/log"),
        ("GET", "/actions/a%00b/log"), ("POST", "/%00/cancel"),
        ("POST", "/actions/%00/cancel"), ("POST", "/%00/release"), ("DELETE", "/actions/%00"),
    ]:
        response = client.open(path, method=method, headers=ALICE)
        assert (response.status_code, response.json["code"]) == (404, "ActionNotFound"), path
    for extra in ({"label": "a\u0000b"}, {"request_id": "r\u0000"}, {"tags": ["\u0000"]}):
        document = {"request_id": "r", "body": {"utc_offset": 1}, **extra}
        response = client.post("/run", headers=ALICE, data=json.dumps(document))
        assert response.status_code == 400 and "NUL" in response.json["description"], extra
    marker = encode_marker(["2026-01-02T03:04:05+00:00", "a\x00"])
    response = client.get(f"/actions?marker={marker}", headers=ALICE)
    assert response.status_code == 400 and response.json["code"] == "BadActionRequest"
    assert client.post(
        "/run", headers=ALICE, json={"request_id": "r", "body": {"utc_offset": 1}, "label": "ok"}
    ).status_code == 202
