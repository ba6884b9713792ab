"""The rate limits when their Redis goes away and comes back (a real
redis-server of the test's own, tests/redis_server.py): requests are served
without limits while it is away (never a 5xx), the outage is one WARNING and
counted in the metrics, and the limits hold again once it answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.ratelimit import GET, Policy, RateLimiter, open_storage, parse_rates
from app.testing import User
from tests.helpers import run
from tests.redis_server import RedisServer
from tests.server import closed_port
from tests.test_ratelimit import metric

NOT_ENFORCED = "rate limits not enforced"
ENFORCED_AGAIN = "rate limits enforced again"


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(
        1 for r in caplog.records
        if r.name == "app.ratelimit" and r.levelname == "WARNING" and text in r.getMessage()
    )


def until_refused(client: FlaskClient, user: User, seconds: float = 20) -> list[int]:
    """New runs, one after another, until one is refused (429) or ``seconds``
    pass; every status seen. (Redis is tried again a second after a failure.)"""
    statuses: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        statuses.append(run(client, user).status_code)
        if statuses[-1] == 429:
            break
        time.sleep(0.05)
    return statuses


@pytest.fixture
def app_on(make_app: Callable[..., Flask]) -> Callable[[RedisServer], Flask]:
    def make(server: RedisServer) -> Flask:
        return make_app(
            RUN_RATE_LIMIT="2/day", GET_RATE_LIMIT="3/day", RATE_LIMIT_STORAGE_URL=server.url
        )

    return make


def test_redis_stopped_then_started(
    app_on: Callable[[RedisServer], Flask],
    own_redis_server: RedisServer,
    alice: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = app_on(own_redis_server).test_client()
    assert [run(client, alice).status_code for _ in range(3)] == [202, 202, 429]

    own_redis_server.stop()
    served = [run(client, alice) for _ in range(5)]
    served += [client.get("/actions", headers=alice.headers) for _ in range(5)]
    assert [r.status_code for r in served] == [202] * 5 + [200] * 5  # fail open
    assert all(r.headers["RateLimit-Policy"] for r in served)
    errors = metric(client, "rate_limit_storage_errors_total")
    assert 1 <= errors <= 10
    assert metric(client, "rate_limit_unchecked_total") == 10
    assert warnings(caplog, NOT_ENFORCED) == 1  # not one a request
    assert warnings(caplog, ENFORCED_AGAIN) == 0

    own_redis_server.start()  # empty: it saved nothing
    statuses = until_refused(client, alice)
    assert statuses[-1] == 429, statuses
    assert all(s in (202, 429) for s in statuses), statuses
    assert warnings(caplog, ENFORCED_AGAIN) == 1
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_a_hung_redis_is_skipped_not_waited_on(
    app_on: Callable[[RedisServer], Flask],
    own_redis_server: RedisServer,
    alice: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SIGSTOP: Redis accepts connections and never answers. Each process
    waits for it at most once a second (socket timeouts), then serves."""
    client = app_on(own_redis_server).test_client()
    assert [run(client, alice).status_code for _ in range(3)] == [202, 202, 429]
    own_redis_server.pause()
    try:
        served = [run(client, alice).status_code for _ in range(4)]
        unchecked = metric(client, "rate_limit_unchecked_total")
        errors = metric(client, "rate_limit_storage_errors_total")
    finally:
        own_redis_server.resume()
    assert served == [202] * 4
    assert unchecked == 4 and 1 <= errors <= 4
    assert warnings(caplog, NOT_ENFORCED) == 1
    statuses = until_refused(client, alice)
    assert statuses[-1] == 429, statuses


def test_a_redis_error_reply_is_served_without_limits(
    app_on: Callable[[RedisServer], Flask], own_redis_server: RedisServer, alice: User
) -> None:
    """A Redis that answers with an error (here: out of memory) is an outage
    too, not a 500."""
    client = app_on(own_redis_server).test_client()
    admin = own_redis_server.client()
    admin.config_set("maxmemory", "1")
    admin.config_set("maxmemory-policy", "noeviction")
    try:
        statuses = [run(client, alice).status_code for _ in range(4)]
    finally:
        admin.config_set("maxmemory", "0")
    assert statuses == [202] * 4
    assert metric(client, "rate_limit_storage_errors_total") >= 1


def test_redis_down_before_the_first_request(
    app_on: Callable[[RedisServer], Flask], own_redis_server: RedisServer, alice: User
) -> None:
    """A worker that starts while Redis is away serves, and limits once it is back."""
    own_redis_server.stop()
    client = app_on(own_redis_server).test_client()
    assert [run(client, alice).status_code for _ in range(3)] == [202] * 3
    own_redis_server.start()
    statuses: Any = until_refused(client, alice)
    assert statuses[-1] == 429, statuses


class Seen:
    """A RateLimitObserver that counts what it is told."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self.errors = 0
        self.unchecked = 0

    def rate_limited(self, reason: str) -> None:
        self.refused.append(reason)

    def rate_limit_storage_error(self) -> None:
        self.errors += 1

    def rate_limit_unchecked(self) -> None:
        self.unchecked += 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_dead_redis_is_asked_once_a_second_and_warned_of_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen, clock = Seen(), Clock()
    policy = Policy(GET, parse_rates("1/day"))
    with closed_port() as port:
        limiter = RateLimiter(open_storage(f"redis://127.0.0.1:{port}/0"), seen, clock)
        assert limiter.hit(policy, "alice") is None  # served: unchecked
        assert (seen.errors, seen.unchecked) == (1, 1)
        for _ in range(5):  # within the second: Redis is not asked
            assert limiter.hit(policy, "alice") is None
        assert (seen.errors, seen.unchecked) == (1, 6)
        clock.now += 1.0  # asked again, fails again: no second warning yet
        assert limiter.hit(policy, "alice") is None
        assert (seen.errors, seen.unchecked) == (2, 7)
        assert warnings(caplog, NOT_ENFORCED) == 1
        clock.now += 60.0
        limiter.hit(policy, "alice")
        assert seen.errors == 3
        assert warnings(caplog, NOT_ENFORCED) == 2
        assert limiter.status(policy, "alice") == []  # no stats: no error either
        assert seen.unchecked == 8 and seen.errors == 4
    assert seen.refused == []
