"""Per-identity request rates (app.ratelimit), through the Flask test client,
on per-process (memory://) storage and on a real Redis (tests/redis_server.py):
429 JSON with Retry-After and the RateLimit headers, repeats of acknowledged
runs answered, cancel and release never limited, the GET rate, one caller
limited while another is served, the exempt list, metrics; the settings and
the start-up checks.

Rates are per day: a count made within one test never straddles a window
(memory:// windows are aligned on the clock; a day boundary inside a test
would only let one more request through).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import limits
import pytest
from flask import Flask
from flask.testing import FlaskClient
from limits.strategies import SlidingWindowCounterRateLimiter

from app import ratelimit
from app.ratelimit import (
    RateLimitSetupError,
    check_storage_reachable,
    describe_storage,
    refuse_per_process_rate_limits,
)
from app.settings import ConfigError, load_settings
from app.testing import FakeGlobus, User
from tests.helpers import run, start
from tests.redis_server import RedisServer
from tests.server import ROOT, closed_port

OFF = {"RUN_RATE_LIMIT": "", "GET_RATE_LIMIT": ""}
DAY = 86400
RATE_LIMIT = re.compile(r'"(?P<name>[a-z0-9-]+)";r=(?P<r>\d+);t=(?P<t>\d+)')


@pytest.fixture(params=["memory", "redis"])
def rate_storage_url(request: pytest.FixtureRequest) -> str:
    """Each rate storage in turn: this process's memory, a real Redis."""
    if request.param == "memory":
        return "memory://"
    return str(request.getfixturevalue("redis_server").url)


@pytest.fixture
def limited(make_app: Callable[..., Flask], rate_storage_url: str) -> Callable[..., Flask]:
    """make_app with the rate storage of this round and no rates unless given."""

    def make(**config: Any) -> Flask:
        return make_app(**{**OFF, "RATE_LIMIT_STORAGE_URL": rate_storage_url, **config})

    return make


def metric(client: FlaskClient, name: str) -> float:
    """One sample's value from /metrics, e.g. 'rate_limited_total{reason="run_rate"}'."""
    for line in client.get("/metrics").get_data(as_text=True).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no sample {name}")


def assert_too_many(response: Any, policy: str) -> int:
    """A 429 in the app's JSON error shape, with Retry-After no earlier than
    the RateLimit field's reset; the Retry-After."""
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.content_type == "application/json"
    assert set(response.json) == {"code", "description"}
    assert response.json["code"] == "TooManyRequests"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= DAY
    assert response.headers["RateLimit-Policy"] == policy
    limits = [m.groupdict() for m in RATE_LIMIT.finditer(response.headers["RateLimit"])]
    assert limits, response.headers["RateLimit"]
    exhausted = [int(m["t"]) for m in limits if m["r"] == "0"]
    assert exhausted and retry_after >= max(exhausted)
    assert f"try again in {retry_after} s" in response.json["description"]
    return retry_after


# --- the run rate ------------------------------------------------------------------
def test_over_the_run_rate_a_new_run_is_429_and_creates_nothing(
    limited: Callable[..., Flask], alice: User
) -> None:
    client = limited(RUN_RATE_LIMIT="2/day").test_client()
    first = run(client, alice, path="/run")
    second = run(client, alice, path="/actions")  # both paths count together
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.headers["RateLimit-Policy"] == '"run";q=2;w=86400'
    assert "RateLimit" not in first.headers  # sent with a 429 only
    assert "Retry-After" not in first.headers

    refused = run(client, alice)
    assert_too_many(refused, '"run";q=2;w=86400')
    assert re.fullmatch(r'"run";r=0;t=\d+', refused.headers["RateLimit"])
    assert "at most 2 a day" in refused.json["description"]
    listed = client.get("/actions", headers=alice.headers).json["actions"]
    assert sorted(a["action_id"] for a in listed) == sorted(
        [first.json["action_id"], second.json["action_id"]]
    )


def test_several_rates_are_each_named_in_the_headers(
    limited: Callable[..., Flask], alice: User
) -> None:
    client = limited(RUN_RATE_LIMIT="2/day;50/month").test_client()
    run(client, alice)
    run(client, alice)
    refused = run(client, alice)
    policy = '"run-86400s";q=2;w=86400, "run-2592000s";q=50;w=2592000'
    assert_too_many(refused, policy)
    found = {m["name"]: int(m["r"]) for m in RATE_LIMIT.finditer(refused.headers["RateLimit"])}
    assert found == {"run-86400s": 0, "run-2592000s": 48}


def test_a_repeat_of_an_acknowledged_run_is_answered_over_the_rate(
    limited: Callable[..., Flask], alice: User
) -> None:
    client = limited(RUN_RATE_LIMIT="2/day").test_client()
    first = run(client, alice, request_id="flow-step-1")
    run(client, alice, request_id="flow-step-2")
    assert run(client, alice, request_id="flow-step-3").status_code == 429

    again = run(client, alice, request_id="flow-step-1")
    assert again.status_code == 200, again.json
    assert again.json["action_id"] == first.json["action_id"]
    assert "RateLimit-Policy" in again.headers
    # The same request_id with another request: the conflict it always was.
    other = run(client, alice, request_id="flow-step-1", body={"utc_offset": 3})
    assert other.status_code == 409
    # A refused request_id was never acknowledged: still refused.
    assert run(client, alice, request_id="flow-step-3").status_code == 429


def test_a_released_actions_request_id_is_a_new_run_again(
    limited: Callable[..., Flask], alice: User, clock: Any
) -> None:
    client = limited(RUN_RATE_LIMIT="1/day", MIN_DELAY_SECONDS=1, MAX_DELAY_SECONDS=1).test_client()
    action_id = run(client, alice, request_id="once").json["action_id"]
    clock.advance(2)
    assert client.post(f"/{action_id}/release", headers=alice.headers).status_code == 200
    assert run(client, alice, request_id="once").status_code == 429


def test_another_callers_request_id_is_not_a_repeat(
    limited: Callable[..., Flask], alice: User, bob: User
) -> None:
    client = limited(RUN_RATE_LIMIT="1/day").test_client()
    assert run(client, alice, request_id="shared-name").status_code == 202
    assert run(client, bob, request_id="other").status_code == 202
    assert run(client, bob, request_id="shared-name").status_code == 429


def test_cancel_resume_and_release_are_never_limited(
    limited: Callable[..., Flask], alice: User, clock: Any
) -> None:
    client = limited(
        RUN_RATE_LIMIT="1/day", GET_RATE_LIMIT="1/day", MIN_DELAY_SECONDS=60, MAX_DELAY_SECONDS=60
    ).test_client()
    action_id = start(client, alice)
    assert run(client, alice).status_code == 429
    assert client.get("/actions", headers=alice.headers).status_code == 200
    assert client.get("/actions", headers=alice.headers).status_code == 429
    answers = []
    for _ in range(3):
        answers.append(client.post(f"/{action_id}/resume", headers=alice.headers))
        answers.append(client.post(f"/actions/{action_id}/resume", headers=alice.headers))
    for path in (f"/{action_id}/cancel", f"/actions/{action_id}/cancel") * 3:
        answers.append(client.post(path, headers=alice.headers))
    answers.append(client.post(f"/{action_id}/release", headers=alice.headers))
    answers.append(client.delete(f"/actions/{action_id}", headers=alice.headers))
    statuses = [a.status_code for a in answers]
    assert statuses == [200] * 6 + [200] + [409] * 5 + [200, 404]
    assert not any("RateLimit-Policy" in a.headers for a in answers)


# --- the GET rate ------------------------------------------------------------------
def test_status_enumerate_log_and_introspection_count_against_the_get_rate(
    limited: Callable[..., Flask], alice: User
) -> None:
    client = limited(GET_RATE_LIMIT="7/day").test_client()
    action_id = start(client, alice)
    paths = [
        f"/{action_id}/status", f"/actions/{action_id}", "/actions",
        f"/{action_id}/log", f"/actions/{action_id}/log", "/",
    ]
    answers = [client.get(path, headers=alice.headers) for path in paths]
    answers.append(client.head(f"/actions/{action_id}", headers=alice.headers))
    assert [a.status_code for a in answers] == [200] * 7
    assert all(a.headers["RateLimit-Policy"] == '"get";q=7;w=86400' for a in answers)
    for path in paths:
        assert_too_many(client.get(path, headers=alice.headers), '"get";q=7;w=86400')
    # The run rate is another count: still served.
    assert run(client, alice).status_code == 202


def test_a_status_of_an_unknown_action_counts_too(
    limited: Callable[..., Flask], alice: User
) -> None:
    client = limited(GET_RATE_LIMIT="1/day").test_client()
    missing = client.get("/actions/no-such-action", headers=alice.headers)
    assert missing.status_code == 404
    assert missing.headers["RateLimit-Policy"] == '"get";q=1;w=86400'
    assert client.get("/actions/no-such-action", headers=alice.headers).status_code == 429


def test_unauthenticated_and_public_requests_are_not_counted(
    limited: Callable[..., Flask], alice: User
) -> None:
    client = limited(GET_RATE_LIMIT="1/day").test_client()
    for _ in range(3):
        assert client.get("/actions").status_code == 401
        assert client.get("/healthz").status_code == 200
        assert client.options("/").status_code == 204
    assert client.get("/actions", headers=alice.headers).status_code == 200


# --- callers ---------------------------------------------------------------------------
def test_one_caller_over_the_rate_another_served(
    limited: Callable[..., Flask], alice: User, bob: User
) -> None:
    client = limited(RUN_RATE_LIMIT="2/day", GET_RATE_LIMIT="2/day").test_client()
    for _ in range(2):
        run(client, alice)
        client.get("/actions", headers=alice.headers)
    assert run(client, alice).status_code == 429
    assert client.get("/actions", headers=alice.headers).status_code == 429
    assert [run(client, bob).status_code for _ in range(2)] == [202, 202]
    assert [client.get("/actions", headers=bob.headers).status_code for _ in range(2)] == [200] * 2
    assert run(client, bob).status_code == 429


def test_the_rate_is_per_effective_identity_not_per_token(
    limited: Callable[..., Flask], globus: FakeGlobus, alice: User
) -> None:
    client = limited(RUN_RATE_LIMIT="2/day").test_client()
    second_token = globus.user("alice-again", identity=alice.identity)
    assert run(client, alice).status_code == 202
    assert run(client, second_token).status_code == 202
    assert run(client, alice).status_code == 429
    assert run(client, second_token).status_code == 429


def test_an_exempt_identity_is_never_limited(
    limited: Callable[..., Flask], globus: FakeGlobus, alice: User, bob: User
) -> None:
    admin_by_link = globus.user("admin", linked=[alice.identity])  # alice linked in
    client = limited(
        RUN_RATE_LIMIT="1/day", GET_RATE_LIMIT="1/day", RATE_LIMIT_EXEMPT=[alice.urn]
    ).test_client()
    assert [run(client, alice).status_code for _ in range(4)] == [202] * 4
    assert [client.get("/actions", headers=alice.headers).status_code for _ in range(4)] == [
        200
    ] * 4
    assert [run(client, admin_by_link).status_code for _ in range(3)] == [202] * 3
    assert [run(client, bob).status_code for _ in range(2)] == [202, 429]
    assert metric(client, 'rate_limited_total{reason="run_rate"}') == 1


def test_an_exempt_group_is_looked_up_only_for_a_caller_over_the_rate(
    limited: Callable[..., Flask], globus: FakeGlobus, alice: User, bob: User
) -> None:
    admins = globus.group(alice)
    client = limited(RUN_RATE_LIMIT="1/day", RATE_LIMIT_EXEMPT=[admins]).test_client()
    assert run(client, alice).status_code == 202
    assert run(client, bob).status_code == 202
    assert globus.group_lookups == 0  # nobody over the rate yet: no Groups call
    assert [run(client, alice).status_code for _ in range(3)] == [202] * 3
    assert run(client, bob).status_code == 429
    assert globus.group_lookups == 2  # alice's and bob's memberships, each cached


def test_a_groups_outage_does_not_exempt(
    limited: Callable[..., Flask], globus: FakeGlobus, alice: User
) -> None:
    admins = globus.group(alice)
    client = limited(RUN_RATE_LIMIT="1/day", RATE_LIMIT_EXEMPT=[admins]).test_client()
    run(client, alice)
    globus.groups_down()
    assert run(client, alice).status_code == 429


# --- metrics ------------------------------------------------------------------------------
def test_metrics_count_429s_by_reason(limited: Callable[..., Flask], alice: User) -> None:
    client = limited(RUN_RATE_LIMIT="1/day", GET_RATE_LIMIT="1/day").test_client()
    assert metric(client, 'rate_limited_total{reason="run_rate"}') == 0
    assert metric(client, 'rate_limited_total{reason="get_rate"}') == 0
    action_id = run(client, alice).json["action_id"]
    run(client, alice, request_id=action_id)  # a 429
    run(client, alice)  # a 429
    client.get("/actions", headers=alice.headers)
    client.get(f"/actions/{action_id}", headers=alice.headers)  # a 429
    assert metric(client, 'rate_limited_total{reason="run_rate"}') == 2
    assert metric(client, 'rate_limited_total{reason="get_rate"}') == 1
    assert metric(client, "rate_limit_storage_errors_total") == 0
    assert metric(client, "rate_limit_unchecked_total") == 0
    http_429 = 'http_requests_total{method="POST",route="/run",status="429"}'
    assert metric(client, http_429) == 2


def test_no_rates_no_limits_and_no_headers(limited: Callable[..., Flask], alice: User) -> None:
    client = limited().test_client()
    answers = [run(client, alice) for _ in range(5)]
    answers += [client.get("/actions", headers=alice.headers) for _ in range(5)]
    assert [a.status_code for a in answers] == [202] * 5 + [200] * 5
    assert not any("RateLimit-Policy" in a.headers for a in answers)


def test_the_defaults_limit_with_room_for_flows(
    make_app: Callable[..., Flask], alice: User
) -> None:
    app = make_app()
    assert app.config["RUN_RATE_LIMIT"] == "600/minute"
    assert app.config["GET_RATE_LIMIT"] == "3000/minute"
    response = run(app.test_client(), alice)
    assert response.status_code == 202
    assert response.headers["RateLimit-Policy"] == '"run";q=600;w=60'


# --- settings ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("RUN_RATE_LIMIT", "lots", "bad setting RUN_RATE_LIMIT='lots': not a rate like"),
        ("GET_RATE_LIMIT", "5/fortnight", "bad setting GET_RATE_LIMIT='5/fortnight': not a rate"),
        ("RUN_RATE_LIMIT", "0/second", "bad setting RUN_RATE_LIMIT='0/second': a rate allows at"),
        ("RUN_RATE_LIMIT", "5/minute;9/minute",
         "bad setting RUN_RATE_LIMIT='5/minute;9/minute': two rates over the same window"),
        ("RATE_LIMIT_STORAGE_URL", "mysql://x", "bad setting RATE_LIMIT_STORAGE_URL: unsupported"),
        ("RATE_LIMIT_EXEMPT", ["admins"], "bad setting RATE_LIMIT_EXEMPT=\"['admins']\": "),
    ],
)
def test_a_bad_rate_setting_is_one_line_naming_it(key: str, value: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({key: value})
    message = str(error.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_rate_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_RUN_RATE_LIMIT", "10/second;100/hour")
    monkeypatch.setenv("FLASK_GET_RATE_LIMIT", "")
    monkeypatch.setenv("FLASK_RATE_LIMIT_EXEMPT", f"urn:globus:auth:identity:{uuid.uuid4()}")
    monkeypatch.setenv("FLASK_RATE_LIMIT_STORAGE_URL", "redis://:secret@127.0.0.1:1/0")
    config = load_settings()
    assert config["RUN_RATE_LIMIT"] == "10/second;100/hour"
    assert config["GET_RATE_LIMIT"] == ""
    assert len(config["RATE_LIMIT_EXEMPT"]) == 1
    monkeypatch.setenv("FLASK_RUN_RATE_LIMIT", "ten")
    with pytest.raises(ConfigError, match=r"^bad setting FLASK_RUN_RATE_LIMIT='ten'"):
        load_settings()
    monkeypatch.setenv("FLASK_RUN_RATE_LIMIT", "")
    monkeypatch.setenv("FLASK_RATE_LIMIT_STORAGE_URL", "http://:secret@x")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "secret" not in str(error.value)  # the URL may hold a password: never echoed


# --- start-up checks ---------------------------------------------------------------------
def config_with(**values: Any) -> dict[str, Any]:
    return load_settings({"AUTH_MODE": "dev", **values})


def test_redis_unreachable_at_start_is_one_line_naming_the_setting() -> None:
    with closed_port() as port:
        config = config_with(RATE_LIMIT_STORAGE_URL=f"redis://:hunter2@127.0.0.1:{port}/0")
        with pytest.raises(RateLimitSetupError) as error:
            check_storage_reachable(config)
    message = str(error.value)
    assert message.startswith(f"RATE_LIMIT_STORAGE_URL='redis://:***@127.0.0.1:{port}/0' ")
    assert "does not answer (ConnectionError" in message
    assert "hunter2" not in message and "\n" not in message


def test_redis_reachable_at_start(redis_server: RedisServer) -> None:
    check_storage_reachable(config_with(RATE_LIMIT_STORAGE_URL=redis_server.url))


def test_without_rates_redis_is_not_asked_at_start() -> None:
    with closed_port() as port:
        check_storage_reachable(
            config_with(RATE_LIMIT_STORAGE_URL=f"redis://127.0.0.1:{port}/0", **OFF)
        )


def test_redis_unreachable_at_start_stops_the_launcher() -> None:
    """``python -m app`` as a real process: one line, exit status 2."""
    command = [sys.executable, "-m", "app", "--dev", "--port", "0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    with closed_port() as port:
        env.update(FLASK_AUTH_MODE="dev", FLASK_RATE_LIMIT_STORAGE_URL=f"redis://127.0.0.1:{port}/0")
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    output = done.stderr + done.stdout
    assert done.returncode == 2, output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.startswith("whattimeisitrightnow: ")]
    assert len(lines) == 1, output
    assert lines[0].startswith(
        f"whattimeisitrightnow: RATE_LIMIT_STORAGE_URL='redis://127.0.0.1:{port}/0' does not answer"
    )


def test_per_process_counts_with_several_workers_are_refused() -> None:
    config = config_with()
    refuse_per_process_rate_limits(config, workers=1)
    with pytest.raises(RateLimitSetupError) as error:
        refuse_per_process_rate_limits(config, workers=3)
    message = str(error.value)
    assert message.startswith("3 worker processes with RATE_LIMIT_STORAGE_URL='memory://'")
    assert "FLASK_RATE_LIMIT_STORAGE_URL=redis://" in message and "\n" not in message
    refuse_per_process_rate_limits(config_with(**OFF), workers=3)  # no rates: nothing to count
    refuse_per_process_rate_limits(
        config_with(RATE_LIMIT_STORAGE_URL="redis://127.0.0.1:6379/0"), workers=3
    )


def test_describe_storage_hides_only_the_password() -> None:
    assert describe_storage("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert describe_storage("redis://u:p@h:1/2?x=1") == "redis://u:***@h:1/2?x=1"
    assert describe_storage("redis://:p@h/0") == "redis://:***@h/0"


def test_process_storage_counts_and_sweeps_without_a_timer_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """memory:// counts as limits' MemoryStorage does, starts no thread, and a
    sweep (at most once a minute) drops every expired counter."""
    now = [1_000_000.0]
    monkeypatch.setattr(ratelimit.time, "time", lambda: now[0])
    storage = ratelimit.open_storage("memory://")
    assert isinstance(storage, ratelimit.ProcessStorage)
    first_timer = storage.timer  # MemoryStorage.__init__'s (cancelled here)
    first_timer.join(timeout=5)  # ended: MemoryStorage would start another on a write
    limiter = SlidingWindowCounterRateLimiter(storage)
    item = limits.parse("3/minute")
    assert [limiter.hit(item, "run", "alice") for _ in range(4)] == [True] * 3 + [False]
    for n in range(50):
        limiter.hit(item, "run", f"caller-{n}")
    assert storage.timer is first_timer  # no timer thread started since
    assert len(storage.storage) == 51
    now[0] += 121  # every counter (two windows long) has expired; a sweep is due
    assert limiter.hit(item, "run", "bob")
    assert [key for key in storage.storage if "bob" not in key] == []
    assert len(storage.storage) == 1
