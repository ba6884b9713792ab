"""Shared fixtures: the project's own pytest plugin (app.testing.plugin: the
app with a fake clock, Globus faked over HTTP, users), the store URLs, and the
servers (python -m app) the e2e tests share (one per configuration, started on first
use, stopped at the end of the session). Shared functions: tests/helpers.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.redis_server import own_redis_server, redis_server  # noqa: F401
from tests.server import serve_process
from tests.store_fixtures import postgres_server, postgres_url, sqlite_url  # noqa: F401

pytest_plugins = ["app.testing.plugin"]

URL_FIXTURES = {"sqlite": "sqlite_url", "postgresql": "postgres_url"}


@pytest.fixture(scope="session")
def shared_rates(redis_server) -> dict[str, str]:  # noqa: F811
    """Rate limits counted in a Redis of the tests' own, as production counts
    them with several worker processes (per-process counts are refused then)."""
    return {"FLASK_RATE_LIMIT_STORAGE_URL": redis_server.url}


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Each store in turn: memory, a fresh SQLite file, a fresh PostgreSQL schema."""
    if request.param == "memory":
        return "memory://"
    return str(request.getfixturevalue(URL_FIXTURES[request.param]))


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request: pytest.FixtureRequest) -> str:
    """Each SQL store in turn (a fresh SQLite file, a fresh PostgreSQL schema)."""
    return str(request.getfixturevalue(URL_FIXTURES[request.param]))


@dataclass(frozen=True)
class Server:
    """A running server: its base URL and the file of all it has written."""

    url: str
    output: Path

    def json_lines(self) -> list[dict[str, Any]]:
        """The server's JSON log lines so far (its own and the app's)."""
        text = self.output.read_text(errors="replace")
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _dev_server(
    tmp_path_factory: pytest.TempPathFactory, delay: int, failure_rate: int = 0
) -> Iterator[Server]:
    output = tmp_path_factory.mktemp("server") / "output"
    env = {"FLASK_MIN_DELAY_SECONDS": str(delay), "FLASK_MAX_DELAY_SECONDS": str(delay),
           "FLASK_FAILURE_RATE": str(failure_rate)}
    with serve_process(env, output_path=output) as (url, _process):
        yield Server(url, output)


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server in dev mode, one worker, memory store; every action takes 1 s
    and succeeds. Shared by the session: use fresh request_ids, expect others'
    actions."""
    yield from _dev_server(tmp_path_factory, delay=1)


@pytest.fixture(scope="session")
def failing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Like dev_server, but every action fails (FAILURE_RATE 1)."""
    yield from _dev_server(tmp_path_factory, delay=1, failure_rate=1)


@pytest.fixture(scope="session")
def long_actions_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Like dev_server, but every action takes 60 s (it stays ACTIVE while a
    test works on it)."""
    yield from _dev_server(tmp_path_factory, delay=60)
