"""Shared fixtures: the app with a fake clock, Globus faked over HTTP, users."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient
from globus_action_provider_tools.authentication import AuthState

from app import create_app
from tests.globus_fakes import SCOPE, FakeGlobus, User
from tests.store_fixtures import postgres_server, postgres_url, sqlite_url  # noqa: F401


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(autouse=True)
def _fresh_auth_caches() -> Iterator[None]:
    """The library's caches are class-wide; no test may see another's tokens."""
    for cache in (
        AuthState.introspect_cache,
        AuthState.group_membership_cache,
        AuthState.dependent_tokens_cache,
    ):
        cache.clear()
    yield


_ROOT_HANDLERS = list(logging.getLogger().handlers)
_ROOT_LEVEL = logging.getLogger().level


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """create_app installs a root log handler; keep it from leaking into the
    next test (e.g. into a command-line client's captured stderr)."""
    yield
    root = logging.getLogger()
    root.handlers[:] = _ROOT_HANDLERS
    root.setLevel(_ROOT_LEVEL)


@pytest.fixture
def globus() -> Iterator[FakeGlobus]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeGlobus(mock)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


GLOBUS_CONFIG: dict[str, Any] = {
    "CLIENT_ID": "00000000-0000-4000-8000-00000000aaaa",
    "CLIENT_SECRET": "not-a-real-secret",
    "SCOPE": SCOPE,
    "AUTH_MODE": "globus",
    "STORE_URL": "memory://",
}


@pytest.fixture
def make_app(globus: FakeGlobus, clock: FakeClock):  # type: ignore[no-untyped-def]
    def make(**overrides: Any) -> Flask:
        return create_app({**GLOBUS_CONFIG, **overrides}, clock=clock, rng=random.Random(7))

    return make


@pytest.fixture
def app(make_app) -> Flask:  # type: ignore[no-untyped-def]
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def alice(globus: FakeGlobus) -> User:
    return globus.user("alice")


@pytest.fixture
def bob(globus: FakeGlobus) -> User:
    return globus.user("bob")
