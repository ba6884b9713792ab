"""Test a Globus Action Provider without Globus credentials.

Globus Auth (token introspection, dependent tokens) and Globus Groups are
faked at the HTTP layer with ``responses``, so the real code path runs: the
library's ``FlaskAuthStateBuilder`` and ``AuthState``, globus-sdk's clients
and retries, the library's caches, scope check and authorization.

Test-only: ``responses`` comes with the test requirements
(``pip install -r requirements-dev.txt``) and is imported only when a fake is
started, so this module imports without it. The service never imports it.
pytest fixtures built on it are in ``app.testing.plugin``.

    from app import create_app
    from app.testing import TEST_CONFIG, fake_globus

    with fake_globus() as globus:
        alice = globus.user("alice")
        client = create_app(TEST_CONFIG).test_client()
        assert client.get("/", headers=alice.headers).status_code == 200
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import requests
from globus_action_provider_tools.authentication import AuthState

if TYPE_CHECKING:
    from responses import RequestsMock

__all__ = [
    "CLIENT_ID",
    "GROUPS_SCOPE",
    "INTROSPECT_URL",
    "MY_GROUPS_URL",
    "SCOPE",
    "TEST_CONFIG",
    "TOKEN_URL",
    "FakeClock",
    "FakeGlobus",
    "User",
    "clear_auth_caches",
    "fake_globus",
    "group_urn",
]

INTROSPECT_URL = "https://auth.globus.org/v2/oauth2/token/introspect"
TOKEN_URL = "https://auth.globus.org/v2/oauth2/token"  # noqa: S105 (dependent-token grants)
MY_GROUPS_URL = "https://groups.api.globus.org/v2/groups/my_groups"
GROUPS_SCOPE = "urn:globus:auth:scope:groups.api.globus.org:view_my_groups_and_memberships"
CLIENT_ID = "00000000-0000-4000-8000-00000000aaaa"
SCOPE = f"https://auth.globus.org/scopes/{CLIENT_ID}/action_all"

# create_app() settings of a provider that asks the fake Globus Auth.
TEST_CONFIG: dict[str, Any] = {
    "CLIENT_ID": CLIENT_ID,
    "CLIENT_SECRET": "not-a-real-secret",
    "SCOPE": SCOPE,
    "AUTH_MODE": "globus",
    "STORE_URL": "memory://",
}


def group_urn(group_id: str) -> str:
    return f"urn:globus:groups:id:{group_id}"


@dataclass
class User:
    """A Globus user and the bearer token it calls the provider with.

    ``linked``: identity ids linked to ``identity`` (in the token's
    identity_set). ``groups``: group ids it is a member of. ``scope``: the
    scope its token carries (another one is refused). ``active=False``: an
    expired or revoked token (introspects as inactive).
    """

    name: str
    token: str
    identity: str = field(default_factory=lambda: str(uuid.uuid4()))
    linked: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    scope: str = SCOPE
    active: bool = True

    @property
    def urn(self) -> str:
        return f"urn:globus:auth:identity:{self.identity}"

    @property
    def linked_urns(self) -> list[str]:
        return [f"urn:globus:auth:identity:{i}" for i in self.linked]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class FakeGlobus:
    """Answers introspection, dependent-token grants and my_groups for its users.

    Any other token introspects as inactive. ``introspections`` and
    ``group_lookups`` count the calls answered; ``mock.calls`` has them all.
    """

    def __init__(self, mock: RequestsMock) -> None:
        self.mock = mock
        self.users: dict[str, User] = {}
        self.introspections = 0
        self.group_lookups = 0
        for method, url, callback in self._routes():
            mock.add_callback(method, url, callback=callback)

    def _routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("POST", INTROSPECT_URL, self._introspect),
            ("POST", TOKEN_URL, self._dependent_tokens),
            ("GET", MY_GROUPS_URL, self._my_groups),
        ]

    # --- users and groups ------------------------------------------------------
    def user(self, name: str, **kwargs: Any) -> User:
        """A new user with a token of its own; ``kwargs`` are User's fields
        (``linked``, ``groups``, ``scope``, ``active``, ``identity``)."""
        user = User(name=name, token=f"token-of-{name}-{uuid.uuid4().hex}", **kwargs)
        self.users[user.token] = user
        return user

    def group(self, *members: User) -> str:
        """A new group of ``members``; its principal URN (for monitor_by/manage_by)."""
        group_id = str(uuid.uuid4())
        for member in members:
            member.groups.append(group_id)
        return group_urn(group_id)

    # --- outages -----------------------------------------------------------------
    def fail(self, method: str, url: str, **response: Any) -> None:
        """From now on, answer ``url`` with ``response`` (``responses.add``
        arguments: ``status=503, json={}``; ``body=requests.ReadTimeout()``
        raises it) instead of the fake."""
        self.mock.replace(method, url, **response)

    def auth_down(self) -> None:
        """Globus Auth unreachable: every introspection fails to connect."""
        self.fail("POST", INTROSPECT_URL, body=requests.ConnectionError("Globus Auth is down"))

    def groups_down(self) -> None:
        """Globus Groups unreachable: every my_groups call fails to connect."""
        self.fail("GET", MY_GROUPS_URL, body=requests.ConnectionError("Globus Groups is down"))

    def recover(self) -> None:
        """Answer every URL with the working fake again."""
        from responses import CallbackResponse

        for method, url, callback in self._routes():
            self.mock.replace(CallbackResponse(method, url, callback=callback))

    def calls_to(self, url: str) -> int:
        """HTTP requests made to ``url`` so far, answered or failed."""
        return sum(1 for call in self.mock.calls if call.request.url.split("?")[0] == url)

    # --- the fake services -------------------------------------------------------
    def _introspect(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.introspections += 1
        token = parse_qs(request.body).get("token", [""])[0]
        user = self.users.get(token)
        if user is None or not user.active:
            return 200, {}, json.dumps({"active": False})
        data = {
            "active": True,
            "scope": user.scope,
            "sub": user.identity,
            "username": f"{user.name}@example.org",
            "client_id": str(uuid.uuid4()),
            "identity_set": [user.identity, *user.linked],
        }
        return 200, {}, json.dumps(data)

    def _dependent_tokens(self, request: Any) -> tuple[int, dict[str, str], str]:
        user = self.users.get(parse_qs(request.body).get("token", [""])[0])
        if user is None:
            return 400, {}, json.dumps({"error": "invalid_grant"})
        tokens = [
            {
                "access_token": f"groups-{user.token}",
                "scope": GROUPS_SCOPE,
                "resource_server": "groups.api.globus.org",
                "expires_in": 172800,
                "token_type": "Bearer",
            }
        ]
        return 200, {}, json.dumps(tokens)

    def _my_groups(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.group_lookups += 1
        token = request.headers.get("Authorization", "").removeprefix("Bearer groups-")
        user = self.users.get(token)
        if user is None:
            return 401, {}, json.dumps({"code": "AUTHENTICATION_ERROR"})
        return 200, {}, json.dumps([{"id": g, "name": g} for g in user.groups])


def _responses() -> ModuleType:
    try:
        import responses
    except ImportError as error:
        raise ImportError(
            "app.testing needs the test requirements: pip install -r requirements-dev.txt"
        ) from error
    return responses


@contextmanager
def fake_globus() -> Iterator[FakeGlobus]:
    """Globus Auth and Groups faked for the block (every other outgoing HTTP
    request made with ``requests`` fails), the library's caches empty."""
    clear_auth_caches()
    with _responses().RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeGlobus(mock)
    clear_auth_caches()


def clear_auth_caches() -> None:
    """Empty the library's caches of introspections, dependent tokens and
    group memberships. They are class-wide: without this, one test sees the
    tokens of another, and a change to a user (``active``, ``groups``) shows
    only once its cached introspection expires."""
    for cache in (
        AuthState.introspect_cache,
        AuthState.group_membership_cache,
        AuthState.dependent_tokens_cache,
    ):
        cache.clear()


class FakeClock:
    """A clock for ``create_app(clock=...)`` that moves only when told."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
