"""ap-client login/logout: the native-app flow against Globus Auth faked over HTTP
(responses), the stored tokens then used against the test provider.

Globus Auth here hands out the access token ``token-carol``, which the test
provider accepts, so the stored (and refreshed) tokens can be seen to work.
"""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import responses
from click.testing import CliRunner

from ap_client.cli import EXIT_HTTP, EXIT_LOGIN, cli

TOKEN_URL = "https://auth.globus.org/v2/oauth2/token"
REVOKE_URL = "https://auth.globus.org/v2/oauth2/token/revoke"
CLIENT_ID = "5f3c4a52-0000-4000-8000-00000000c11e"
RESOURCE_SERVER = "test-provider"
SECRETS = ("token-carol", "refresh-carol-1")


@pytest.fixture
def token_file(monkeypatch, tmp_path) -> Path:
    for name in ("ACTION_PROVIDER_URL", "ACTION_PROVIDER_TOKEN", "ACTION_PROVIDER_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "config" / "tokens.json"
    monkeypatch.setenv("ACTION_PROVIDER_TOKEN_FILE", str(path))
    return path


class FakeAuth:
    """Globus Auth's token, refresh and revoke endpoints; the provider passes through."""

    def __init__(self, mock: responses.RequestsMock, scope: str, expires_in: int = 3600):
        self.scope = scope
        self.expires_in = expires_in
        self.grants: list[dict[str, list[str]]] = []
        self.revoked: list[str] = []
        mock.add_passthru("http://127.0.0.1")
        mock.add_callback(responses.POST, TOKEN_URL, callback=self._token)
        mock.add_callback(responses.POST, REVOKE_URL, callback=self._revoke)

    def _token(self, request):  # type: ignore[no-untyped-def]
        form = parse_qs(request.body)
        self.grants.append(form)
        if form.get("code") == ["bad-code"]:
            return 401, {}, json.dumps({"error": "invalid_grant"})
        body = {
            "access_token": "token-carol",
            "expires_in": self.expires_in,
            "resource_server": RESOURCE_SERVER,
            "scope": self.scope,
            "token_type": "Bearer",
            "other_tokens": [],
        }
        if form["grant_type"] == ["authorization_code"]:
            body["refresh_token"] = "refresh-carol-1"
        return 200, {}, json.dumps(body)

    def _revoke(self, request):  # type: ignore[no-untyped-def]
        self.revoked.append(parse_qs(request.body)["token"][0])
        return 200, {}, json.dumps({"active": False})


def ap(url: str, *args: str, input: str | None = None):
    return CliRunner().invoke(cli, ["--url", url, *args], input=input, catch_exceptions=False)


def provider_scope(url: str) -> str:
    result = ap(url, "--token", "token-alice", "--json", "introspect")
    return json.loads(result.stdout)["globus_auth_scope"]


def stored(path: Path) -> dict:
    return json.loads(path.read_text())["data"]


def test_login_stores_tokens_that_then_work(url, token_file):
    scope = provider_scope(url)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        auth = FakeAuth(mock, scope)
        # No --scope: it is read from the provider's introspection (with alice's token).
        result = ap(url, "--token", "token-alice", "login", "--client-id", CLIENT_ID,
                    input="the-code\n")
        assert result.exit_code == 0, result.stderr
        authorize = next(line.strip() for line in result.stderr.splitlines() if "authorize" in line)
        query = parse_qs(urlparse(authorize).query)
        assert query["client_id"] == [CLIENT_ID]
        assert query["scope"] == [scope]
        assert query["access_type"] == ["offline"]  # refresh tokens
        assert auth.grants[0]["code"] == ["the-code"]
        assert auth.grants[0]["grant_type"] == ["authorization_code"]
        assert "code_verifier" in auth.grants[0]  # PKCE, as a native app must

        # The stored tokens are used when no --token is given.
        run = ap(url, "--json", "run", "--body", '{"n": 1}')
        assert run.exit_code == 0, run.stderr
    action_id = json.loads(run.stdout)["action_id"]
    as_carol = ap(url, "--token", "token-carol", "status", action_id)
    assert as_carol.exit_code == 0  # it is carol's action

    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    entry = stored(token_file)[url][RESOURCE_SERVER]
    assert entry["refresh_token"] == "refresh-carol-1" and entry["client_id"] == CLIENT_ID
    for output in (result.stdout, result.stderr, run.stdout, run.stderr):
        assert not any(secret in output for secret in SECRETS)


def test_expired_tokens_are_refreshed_and_stored(url, token_file):
    scope = provider_scope(url)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        auth = FakeAuth(mock, scope, expires_in=10)  # inside the SDK's 60 s margin
        login = ap(url, "login", "--client-id", CLIENT_ID, "--scope", scope, input="c\n")
        assert login.exit_code == 0, login.stderr
        before = stored(token_file)[url][RESOURCE_SERVER]["expires_at_seconds"]
        auth.expires_in = 3600
        run = ap(url, "run", "--body", '{"n": 1}')
        assert run.exit_code == 0, run.stderr
    assert [g["grant_type"] for g in auth.grants] == [["authorization_code"], ["refresh_token"]]
    assert auth.grants[1]["refresh_token"] == ["refresh-carol-1"]
    after = stored(token_file)[url][RESOURCE_SERVER]
    assert after["expires_at_seconds"] > before + 3000 > time.time()
    assert after["refresh_token"] == "refresh-carol-1"  # kept: the refresh sent none


def test_logout_revokes_and_forgets(url, token_file):
    scope = provider_scope(url)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        auth = FakeAuth(mock, scope)
        ap(url, "login", "--client-id", CLIENT_ID, "--scope", scope, input="c\n")
        result = ap(url, "logout")
        assert result.exit_code == 0
        assert sorted(auth.revoked) == sorted(SECRETS)
    assert stored(token_file)[url] == {}
    assert "Logged out" in result.stderr
    after = ap(url, "status", "x")
    assert after.exit_code == EXIT_HTTP and "401" in after.stderr
    assert "No stored tokens" in ap(url, "logout").stderr


def test_login_needs_a_client_id(url, token_file):
    result = ap(url, "login", "--scope", "s")
    assert result.exit_code == 2
    assert "client id" in result.stderr and "ACTION_PROVIDER_CLIENT_ID" in result.stderr
    assert not token_file.exists()


def test_login_without_scope_or_introspection_says_what_to_do(url, token_file):
    result = ap(url, "login", "--client-id", CLIENT_ID)  # no token: introspection is 401
    assert result.exit_code == EXIT_LOGIN
    assert "pass --scope" in result.stderr


def test_rejected_code_is_one_line(url, token_file):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        FakeAuth(mock, "s")
        result = ap(url, "login", "--client-id", CLIENT_ID, "--scope", "s", input="bad-code\n")
    assert result.exit_code == EXIT_LOGIN
    assert result.stderr.strip().splitlines()[-1].startswith("Error: Globus Auth refused")
    assert not token_file.exists()
