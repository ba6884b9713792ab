"""Globus Auth and Groups, faked at the HTTP layer with ``responses``.

The library's real code (globus-sdk clients, AuthState, its caches) makes the
calls; only the remote services are replaced.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import responses

INTROSPECT_URL = "https://auth.globus.org/v2/oauth2/token/introspect"
TOKEN_URL = "https://auth.globus.org/v2/oauth2/token"
MY_GROUPS_URL = "https://groups.api.globus.org/v2/groups/my_groups"
GROUPS_SCOPE = "urn:globus:auth:scope:groups.api.globus.org:view_my_groups_and_memberships"
SCOPE = "https://auth.globus.org/scopes/00000000-0000-4000-8000-00000000aaaa/action_all"


@dataclass
class User:
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
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class FakeGlobus:
    """Answers introspection, dependent-token grants and my_groups for known users."""

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.mock = mock
        self.users: dict[str, User] = {}
        self.introspections = 0
        self.group_lookups = 0
        mock.add_callback(responses.POST, INTROSPECT_URL, callback=self._introspect)
        mock.add_callback(responses.POST, TOKEN_URL, callback=self._dependent_tokens)
        mock.add_callback(responses.GET, MY_GROUPS_URL, callback=self._my_groups)

    def fail(self, method: str, url: str, **response: object) -> None:
        """From now on, answer ``url`` with ``response`` (responses.add arguments;
        ``body=requests.ConnectionError()`` raises it) instead of the fake."""
        self.mock.replace(method, url, **response)

    def recover(self) -> None:
        """Answer every URL with the working fake again."""
        for method, url, callback in (
            (responses.POST, INTROSPECT_URL, self._introspect),
            (responses.POST, TOKEN_URL, self._dependent_tokens),
            (responses.GET, MY_GROUPS_URL, self._my_groups),
        ):
            self.mock.replace(responses.CallbackResponse(method, url, callback=callback))

    def calls_to(self, url: str) -> int:
        """HTTP requests made to ``url`` so far, answered or failed."""
        return sum(1 for call in self.mock.calls if call.request.url.split("?")[0] == url)

    def user(self, name: str, **kwargs: object) -> User:
        user = User(name=name, token=f"token-of-{name}-{uuid.uuid4().hex}", **kwargs)
        self.users[user.token] = user
        return user

    def _introspect(self, request):  # type: ignore[no-untyped-def]
        self.introspections += 1
        token = parse_qs(request.body)["token"][0]
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

    def _dependent_tokens(self, request):  # type: ignore[no-untyped-def]
        form = parse_qs(request.body)
        user = self.users.get(form["token"][0])
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

    def _my_groups(self, request):  # type: ignore[no-untyped-def]
        self.group_lookups += 1
        token = request.headers["Authorization"].removeprefix("Bearer groups-")
        user = self.users[token]
        return 200, {}, json.dumps([{"id": g, "name": g} for g in user.groups])
