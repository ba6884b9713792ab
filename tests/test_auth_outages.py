"""Globus Auth and Groups failing, simulated at the HTTP layer: the caller gets
a 503 with Retry-After (Auth) or a denial (Groups), never a 500 or a hang."""

from __future__ import annotations

import logging
import uuid

import pytest
import requests
import responses
from globus_action_provider_tools.authentication import AuthState

from app.testing import INTROSPECT_URL, MY_GROUPS_URL, TOKEN_URL

OUTAGES = {
    "connection refused": {"body": requests.ConnectionError("connection refused")},
    "read timeout": {"body": requests.ReadTimeout("read timed out")},
    "connect timeout": {"body": requests.ConnectTimeout("connect timed out")},
    "500": {"status": 500, "json": {"error": "internal"}},
    "502 html": {"status": 502, "body": "<html>Bad Gateway</html>"},
    "503 retry-after": {"status": 503, "json": {}, "headers": {"Retry-After": "3600"}},
    "429": {"status": 429, "json": {}},
}
MALFORMED = {
    "html": {"status": 200, "body": "<html>captive portal</html>"},
    "list": {"status": 200, "json": [1, 2]},
    "no active": {"status": 200, "json": {"scope": "x"}},
    "no identity_set": {"status": 200, "json": {"active": True, "sub": "x", "scope": "s"}},
    "identity_set a string": {
        "status": 200,
        "json": {"active": True, "sub": "x", "scope": "s", "identity_set": "abc"},
    },
}


def assert_unavailable(response):
    assert response.status_code == 503
    assert response.is_json and set(response.json) == {"code", "description"}
    assert int(response.headers["Retry-After"]) > 0


@pytest.mark.parametrize("outage", OUTAGES.values(), ids=OUTAGES.keys())
def test_auth_outage_is_503_after_one_retry(make_app, globus, alice, outage):
    client = make_app(AUTH_TIMEOUT_SECONDS=1).test_client()
    globus.fail(responses.POST, INTROSPECT_URL, **outage)
    for path in ("/", f"/{uuid.uuid4()}/status"):
        assert_unavailable(client.get(path, headers=alice.headers))
    assert_unavailable(client.post("/run", headers=alice.headers, json={"request_id": "r"}))
    # Two attempts per request (the SDK's one retry), never more: bounded time.
    assert globus.calls_to(INTROSPECT_URL) == 3 * 2
    # Failures are not cached: once Auth is back, the same token works.
    globus.recover()
    assert client.get("/", headers=alice.headers).status_code == 200


def test_every_call_to_auth_carries_the_configured_timeout(make_app, globus, alice):
    client = make_app(AUTH_TIMEOUT_SECONDS=3).test_client()
    globus.fail(responses.POST, INTROSPECT_URL, body=requests.ReadTimeout("slow"))
    assert_unavailable(client.get("/", headers=alice.headers))
    timeouts = [
        call.request.req_kwargs["timeout"]
        for call in globus.mock.calls
        if call.request.url == INTROSPECT_URL
    ]
    # Two attempts of (3 - 0.3 pause) / 2 seconds: the whole call stays within 3 s.
    assert timeouts == [1.35, 1.35]
    transport = client.application.extensions["auth_state_builder"].auth_client.transport
    assert transport.max_retries == 1 and transport.max_sleep == pytest.approx(0.3)


@pytest.mark.parametrize("status", [400, 401, 403])
def test_auth_rejecting_our_credentials_is_503_and_one_clear_log_line(
    make_app, globus, alice, status, caplog
):
    client = make_app().test_client()
    globus.fail(responses.POST, INTROSPECT_URL, status=status, json={"error": "invalid_client"})
    caplog.set_level(logging.INFO)
    assert_unavailable(client.get("/", headers=alice.headers))
    assert globus.calls_to(INTROSPECT_URL) == 1  # not retried
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "client credentials" in errors[0] and "CLIENT_SECRET" in errors[0]
    assert "not-a-real-secret" not in caplog.text and alice.token not in caplog.text


@pytest.mark.parametrize("answer", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_introspection_is_503_and_not_cached(make_app, globus, alice, answer):
    client = make_app().test_client()
    globus.fail(responses.POST, INTROSPECT_URL, **answer)
    assert_unavailable(client.get("/", headers=alice.headers))
    globus.recover()
    assert client.get("/", headers=alice.headers).status_code == 200


# --- Groups --------------------------------------------------------------------
GROUPS_OUTAGES = {
    "groups connection refused": (
        responses.GET, MY_GROUPS_URL, {"body": requests.ConnectionError("down")}
    ),
    "groups timeout": (responses.GET, MY_GROUPS_URL, {"body": requests.ReadTimeout("slow")}),
    "groups 500": (responses.GET, MY_GROUPS_URL, {"status": 500, "json": {}}),
    "groups malformed": (responses.GET, MY_GROUPS_URL, {"status": 200, "json": [1, 2]}),
    "token grant connection refused": (
        responses.POST, TOKEN_URL, {"body": requests.ConnectionError("down")}
    ),
    "token grant timeout": (responses.POST, TOKEN_URL, {"body": requests.ConnectTimeout("slow")}),
    "token grant 503": (responses.POST, TOKEN_URL, {"status": 503, "json": {}}),
}


@pytest.mark.parametrize("outage", GROUPS_OUTAGES.values(), ids=GROUPS_OUTAGES.keys())
def test_groups_outage_denies_group_principals(make_app, globus, alice, outage, caplog):
    client = make_app(AUTH_TIMEOUT_SECONDS=1).test_client()
    group = str(uuid.uuid4())
    member = globus.user("member", groups=[group])
    urn = f"urn:globus:groups:id:{group}"
    started = client.post(
        "/run", headers=alice.headers,
        json={"request_id": "g", "body": {"utc_offset": 1}, "monitor_by": [urn]},
    )
    action_id = started.json["action_id"]
    method, url, answer = outage
    globus.fail(method, url, **answer)

    denied = client.get(f"/{action_id}/status", headers=member.headers)
    assert denied.status_code == 404 and denied.is_json
    # The grant and the Groups call carry the configured timeout, as introspection does.
    timeouts = {
        call.request.req_kwargs["timeout"]
        for call in globus.mock.calls
        if call.request.url.split("?")[0] in (TOKEN_URL, MY_GROUPS_URL)
    }
    assert timeouts == {0.45}
    assert any("Groups" in r.getMessage() or "groups" in r.getMessage() for r in caplog.records)
    # The creator is unaffected (no Groups call needed).
    assert client.get(f"/{action_id}/status", headers=alice.headers).status_code == 200

    # A denial is not remembered: once Groups is back, the member gets in.
    globus.recover()
    AuthState.dependent_tokens_cache.clear()
    assert client.get(f"/{action_id}/status", headers=member.headers).status_code == 200


# --- the introspection cache ------------------------------------------------------
def test_thousand_tokens_used_ten_times_are_introspected_once_each(make_app, globus):
    # INTROSPECT_CACHE_SIZE default: 10,000 (quiet logs: 10,000 requests)
    client = make_app(LOG_LEVEL="WARNING").test_client()
    users = [globus.user(f"user{i}") for i in range(1000)]
    for _ in range(10):
        for user in users:  # round robin: the worst order for a small LRU/TTL cache
            response = client.get("/not-an-action/status", headers=user.headers)
            assert response.status_code == 404
    assert globus.introspections == 1000


def test_the_library_default_cache_would_introspect_every_time(make_app, globus):
    """The same traffic pattern with the library's default size (100) misses
    every time: the test above depends on the configured size."""
    client = make_app(INTROSPECT_CACHE_SIZE=100).test_client()
    users = [globus.user(f"user{i}") for i in range(200)]
    for _ in range(2):
        for user in users:
            client.get("/not-an-action/status", headers=user.headers)
    assert globus.introspections == 400


def test_cache_sizes_and_ttls_come_from_config(make_app):
    make_app(
        INTROSPECT_CACHE_SIZE=1234, INTROSPECT_CACHE_TTL_SECONDS=77,
        GROUPS_CACHE_SIZE=2345, GROUPS_CACHE_TTL_SECONDS=88,
        DEPENDENT_TOKENS_CACHE_SIZE=3456, DEPENDENT_TOKENS_CACHE_TTL_SECONDS=99,
    )
    assert (AuthState.introspect_cache.maxsize, AuthState.introspect_cache.ttl) == (1234, 77)
    assert (AuthState.group_membership_cache.maxsize, AuthState.group_membership_cache.ttl) == (
        2345, 88
    )
    assert (AuthState.dependent_tokens_cache.maxsize, AuthState.dependent_tokens_cache.ttl) == (
        3456, 99
    )


def test_five_hundred_users_sharing_with_a_group_ask_groups_once_each(make_app, globus):
    """With the library's default sizes (100 entries), 500 users whose access
    comes through a group missed ~80 % of group checks; with the defaults
    (10,000) each user's groups and dependent tokens are fetched once."""
    client = make_app(LOG_LEVEL="WARNING").test_client()
    owner = globus.user("owner")
    users = [globus.user(f"user{i}") for i in range(500)]
    group = globus.group(*users)
    started = client.post(
        "/run", headers=owner.headers,
        json={"request_id": "shared", "body": {"utc_offset": 1}, "monitor_by": [group]},
    )
    action_id = started.json["action_id"]
    for _ in range(3):
        for user in users:  # round robin: the worst order for a small cache
            assert client.get(f"/{action_id}/status", headers=user.headers).status_code == 200
    assert globus.group_lookups == 500
    assert globus.calls_to(TOKEN_URL) == 500
