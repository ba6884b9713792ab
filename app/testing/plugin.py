"""pytest fixtures for testing this provider without Globus credentials.

Register the plugin in a ``conftest.py`` (or at the top of a test file):

    pytest_plugins = ["app.testing.plugin"]

Fixtures:

- ``globus``: the fake Globus Auth and Groups (``app.testing.FakeGlobus``)
  for the test; ``globus.user(name, ...)`` makes more users,
  ``globus.group(*users)`` a group, ``globus.auth_down()``/``fail(...)`` an outage;
- ``alice``, ``bob``: two users (``.headers``, ``.urn``, ``.token``);
- ``clock``: the app's clock (``app.testing.FakeClock``); ``clock.advance(s)``;
- ``make_app(**config)``: ``create_app`` with the fake Globus's client, this
  clock, seeded randomness and the memory store; any config key can be given;
- ``app``, ``client``: ``make_app()`` and its Flask test client.

Every test starts with the library's (class-wide) auth caches empty, and the
root logger as it was before ``create_app`` installed its handler.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.testing import TEST_CONFIG, FakeClock, FakeGlobus, User, clear_auth_caches, fake_globus


@pytest.fixture(autouse=True)
def _fresh_auth_caches() -> Iterator[None]:
    """The library's caches are class-wide; no test may see another's tokens."""
    clear_auth_caches()
    yield


# The root logger as it was when the plugin was loaded, before any test.
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
    with fake_globus() as fake:
        yield fake


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_app(globus: FakeGlobus, clock: FakeClock) -> Callable[..., Flask]:
    def make(**overrides: Any) -> Flask:
        rng = random.Random(7)  # noqa: S311 (a simulation's delays and outcomes)
        return create_app({**TEST_CONFIG, **overrides}, clock=clock, rng=rng)

    return make


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
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
