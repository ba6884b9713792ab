"""The live-action limit through the app (MAX_LIVE_ACTIONS): 429 with
Retry-After over it, counted in the metrics; a repeat is answered; release
makes room; the exempt list; the setting. Each store's own count and its
races: test_store_contract.py; across 2 worker processes: test_live_actions_e2e.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.errors import ROOM_RETRY_AFTER_SECONDS
from app.settings import ConfigError, load_settings
from app.testing import FakeGlobus, User
from tests.helpers import run

NO_RATES = {"RUN_RATE_LIMIT": "", "GET_RATE_LIMIT": ""}


def metric(client: FlaskClient, name: str) -> float:
    for line in client.get("/metrics").get_data(as_text=True).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no sample {name}")


@pytest.fixture
def limited(make_app: Callable[..., Flask]) -> Callable[..., FlaskClient]:
    def make(limit: int = 2, **overrides: Any) -> FlaskClient:
        return make_app(MAX_LIVE_ACTIONS=limit, **NO_RATES, **overrides).test_client()

    return make


def assert_refused(response: Any) -> None:
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.content_type == "application/json"
    assert set(response.json) == {"code", "description"}
    assert response.json["code"] == "TooManyRequests"
    assert response.headers["Retry-After"] == str(ROOM_RETRY_AFTER_SECONDS)
    assert "2 live actions" in response.json["description"]
    assert f"try again in {ROOM_RETRY_AFTER_SECONDS} s" in response.json["description"]


def test_over_the_limit_a_new_run_is_429_and_counted(
    limited: Callable[..., FlaskClient], alice: User, bob: User
) -> None:
    client = limited()
    assert metric(client, 'rate_limited_total{reason="live_actions"}') == 0
    first, second = run(client, alice), run(client, alice, path="/actions")
    assert (first.status_code, second.status_code) == (202, 202)
    refused = run(client, alice)
    assert_refused(refused)
    assert run(client, bob).status_code == 202  # per identity
    assert metric(client, 'rate_limited_total{reason="live_actions"}') == 1
    listed = client.get("/actions", headers=alice.headers).json["actions"]
    assert sorted(a["action_id"] for a in listed) == sorted(
        [first.json["action_id"], second.json["action_id"]]
    )


def test_a_repeat_is_answered_and_release_makes_room_at_once(
    limited: Callable[..., FlaskClient], alice: User, clock: Any
) -> None:
    client = limited(MIN_DELAY_SECONDS=1, MAX_DELAY_SECONDS=1)
    first = run(client, alice, request_id="first")
    run(client, alice)
    assert_refused(run(client, alice))
    again = run(client, alice, request_id="first")
    assert again.status_code == 200 and again.json["action_id"] == first.json["action_id"]
    clock.advance(2)  # completed: still kept, still counted
    assert_refused(run(client, alice))
    action_id = first.json["action_id"]
    assert client.post(f"/{action_id}/release", headers=alice.headers).status_code == 200
    assert run(client, alice).status_code == 202
    assert_refused(run(client, alice))


def test_actions_past_their_release_after_do_not_count(
    limited: Callable[..., FlaskClient], alice: User, clock: Any
) -> None:
    client = limited(MIN_DELAY_SECONDS=1, MAX_DELAY_SECONDS=1)
    run(client, alice, release_after="PT10S")
    run(client, alice)
    assert_refused(run(client, alice))
    clock.advance(12)
    assert run(client, alice).status_code == 202


def test_an_exempt_identity_is_not_limited(
    limited: Callable[..., FlaskClient], alice: User, bob: User
) -> None:
    client = limited(limit=1, RATE_LIMIT_EXEMPT=[alice.urn])
    assert [run(client, alice).status_code for _ in range(3)] == [202] * 3
    assert [run(client, bob).status_code for _ in range(2)] == [202, 429]
    assert metric(client, 'rate_limited_total{reason="live_actions"}') == 1


def test_an_exempt_group_is_looked_up_only_for_a_caller_over_the_limit(
    limited: Callable[..., FlaskClient], globus: FakeGlobus, alice: User, bob: User
) -> None:
    admins = globus.group(alice)
    client = limited(limit=1, RATE_LIMIT_EXEMPT=[admins])
    assert run(client, alice).status_code == 202
    assert run(client, bob).status_code == 202
    assert globus.group_lookups == 0  # nobody over the limit yet: no Groups call
    assert [run(client, alice).status_code for _ in range(3)] == [202] * 3
    assert run(client, bob).status_code == 429
    assert globus.group_lookups == 2  # alice's and bob's memberships, each cached


def test_zero_is_no_limit(limited: Callable[..., FlaskClient], alice: User) -> None:
    client = limited(limit=0)
    assert {run(client, alice).status_code for _ in range(5)} == {202}


def test_the_default_leaves_room_for_flows() -> None:
    settings = load_settings()
    assert settings["MAX_LIVE_ACTIONS"] == 10_000


@pytest.mark.parametrize("value", [-1, "many"])
def test_a_bad_limit_is_one_line_naming_the_setting(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"^bad setting MAX_LIVE_ACTIONS=.*at least 0") as caught:
        load_settings({"MAX_LIVE_ACTIONS": value})
    assert "\n" not in str(caught.value)
