"""Shared fixtures: the project's own pytest plugin (app.testing.plugin: the
app with a fake clock, Globus faked over HTTP, users), the store URLs, and the
gunicorn servers the e2e tests share (one per configuration, started on first
use, stopped at the end of the session). Shared functions: tests/helpers.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server import gunicorn
from tests.store_fixtures import postgres_server, postgres_url, sqlite_url  # noqa: F401

pytest_plugins = ["app.testing.plugin"]

URL_FIXTURES = {"sqlite": "sqlite_url", "postgresql": "postgres_url"}


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


@pytest.fixture(scope="session")
def dev_server() -> Iterator[str]:
    """Base URL of gunicorn in dev mode, one worker, memory store; every
    action takes 1 s. Shared: use fresh request_ids, expect others' actions."""
    with gunicorn({"FLASK_MIN_DELAY_SECONDS": "1", "FLASK_MAX_DELAY_SECONDS": "1"}) as url:
        yield url


@pytest.fixture(scope="session")
def long_actions_server() -> Iterator[str]:
    """Like dev_server, but every action takes 60 s (it stays ACTIVE while a
    test works on it)."""
    with gunicorn({"FLASK_MIN_DELAY_SECONDS": "60", "FLASK_MAX_DELAY_SECONDS": "60"}) as url:
        yield url
