"""Who may use the provider (app.hooks' ``authorize``): VISIBLE_TO for
``GET /``, RUNNABLE_BY for a run, checked right after the token and before
the body is read. Anyone else gets 403 JSON and learns nothing of the input
schema; "public" in VISIBLE_TO serves the introspection without a token."""

from __future__ import annotations

import itertools
import json

import pytest

from app.testing import MY_GROUPS_URL
from tests.helpers import run, start
from tests.spec import assert_conforms

EVERYONE = "all_authenticated_users"
FORBIDDEN_RUN = {"code": "ActionForbidden",
                 "description": "You may not run actions on this provider."}
FORBIDDEN_VIEW = {"code": "ActionForbidden",
                  "description": "This provider is not visible to you."}
INVALID_RUNS = [
    b"not json",
    b'{"request_id": "r"}',
    b'{"request_id": "r", "body": {"utc_offset": 99}}',
    b'{"request_id": "r", "body": {"utc_offset": 1}, "tags": [1]}',
]


def assert_no_schema(response) -> None:
    """The answer says nothing of what a run takes."""
    text = response.get_data(as_text=True)
    assert "utc_offset" not in text and "body" not in text and "$." not in text


# --- RUNNABLE_BY -----------------------------------------------------------------------
def test_only_runnable_callers_run(make_app, alice, bob):
    client = make_app(RUNNABLE_BY=[alice.urn]).test_client()
    assert run(client, alice).status_code == 202
    for path in ("/run", "/actions"):
        refused = run(client, bob, path=path)
        assert refused.status_code == 403 and refused.json == FORBIDDEN_RUN


@pytest.mark.parametrize("raw", INVALID_RUNS)
def test_a_caller_who_may_not_run_gets_403_not_400(make_app, alice, bob, raw):
    """Authorization comes before the body: an invalid body tells bob nothing."""
    client = make_app(RUNNABLE_BY=[alice.urn]).test_client()
    headers = {**bob.headers, "Content-Type": "application/json"}
    refused = client.post("/run", headers=headers, data=raw)
    assert refused.status_code == 403 and refused.json == FORBIDDEN_RUN
    assert_no_schema(refused)
    allowed = client.post("/run", headers={**alice.headers, "Content-Type": "application/json"},
                          data=raw)
    assert allowed.status_code == 400 and allowed.json["code"] == "BadActionRequest"


def test_the_body_of_a_caller_who_may_not_run_is_never_read(make_app, alice, bob):
    """A body over MAX_CONTENT_LENGTH is 413 once read; for bob it is 403."""
    client = make_app(RUNNABLE_BY=[alice.urn]).test_client()
    big = b'{"request_id": "r", "body": {"utc_offset": 1}, "label": "' + b"x" * 70_000 + b'"}'
    headers = {"Content-Type": "application/json"}
    assert client.post("/run", headers={**bob.headers, **headers}, data=big).status_code == 403
    assert client.post("/run", headers={**alice.headers, **headers}, data=big).status_code == 413


def test_no_token_is_still_401_before_authorization(make_app, alice):
    client = make_app(RUNNABLE_BY=[alice.urn], VISIBLE_TO=[alice.urn]).test_client()
    assert client.post("/run", json={"request_id": "r"}).status_code == 401
    assert client.get("/").status_code == 401


def test_runnable_by_a_group(make_app, globus, alice, bob):
    group = globus.group(alice)
    client = make_app(RUNNABLE_BY=[group]).test_client()
    assert [run(client, alice).status_code for _ in range(3)] == [202] * 3
    assert globus.calls_to(MY_GROUPS_URL) == 1  # one Groups call for alice's token, cached
    assert run(client, bob).json == FORBIDDEN_RUN


def test_runnable_by_a_linked_identity(make_app, globus):
    """The token's whole identity set counts, as in the library's checks."""
    carol = globus.user("carol", linked=["5e6f7a8b-0000-4000-8000-000000000001"])
    client = make_app(RUNNABLE_BY=[carol.linked_urns[0]]).test_client()
    assert run(client, carol).status_code == 202


def test_a_groups_outage_denies_and_never_fails(make_app, globus, alice):
    group = globus.group(alice)
    client = make_app(RUNNABLE_BY=[group]).test_client()
    globus.groups_down()
    refused = run(client, alice)
    assert refused.status_code == 403 and refused.json == FORBIDDEN_RUN
    globus.recover()
    assert run(client, alice).status_code == 202  # the failure was not cached


def test_what_runnable_by_does_not_govern(make_app, alice, bob):
    """Status, log, list, cancel and release go by the action's own
    monitor_by and manage_by: bob, who may not run, follows what alice shared."""
    client = make_app(RUNNABLE_BY=[alice.urn]).test_client()
    action_id = start(client, alice, monitor_by=[bob.urn], manage_by=[bob.urn])
    assert client.get(f"/{action_id}/status", headers=bob.headers).status_code == 200
    assert client.get(f"/actions/{action_id}/log", headers=bob.headers).status_code == 200
    listed = client.get("/actions?roles=monitor_by", headers=bob.headers)
    assert [a["action_id"] for a in listed.json["actions"]] == [action_id]
    assert client.post(f"/{action_id}/cancel", headers=bob.headers).status_code == 200
    assert client.post(f"/{action_id}/release", headers=bob.headers).status_code == 200


@pytest.mark.parametrize(
    "allowed",
    [list(c) for n in (1, 2, 3, 4) for c in itertools.combinations(
        ["alice", "bob", "group of bob", EVERYONE], n)],
    ids=lambda names: "+".join(names),
)
def test_every_runnable_by_decides_every_caller(make_app, globus, allowed):
    """Every combination of principals, for three callers: 202 if one of the
    caller's principals is listed (or everyone is), else 403, whatever the body."""
    alice, bob, carol = globus.user("alice"), globus.user("bob"), globus.user("carol")
    principals = {"alice": alice.urn, "bob": bob.urn, "group of bob": globus.group(bob),
                  EVERYONE: EVERYONE}
    client = make_app(RUNNABLE_BY=[principals[name] for name in allowed]).test_client()
    may_run = {
        "alice": EVERYONE in allowed or "alice" in allowed,
        "bob": EVERYONE in allowed or "bob" in allowed or "group of bob" in allowed,
        "carol": EVERYONE in allowed,
    }
    for name, user in (("alice", alice), ("bob", bob), ("carol", carol)):
        good, bad = run(client, user), run(client, user, body={"utc_offset": "x"})
        expected = (202, 400) if may_run[name] else (403, 403)
        assert (good.status_code, bad.status_code) == expected, name


# --- VISIBLE_TO ------------------------------------------------------------------------
def test_only_callers_it_is_visible_to_introspect(make_app, alice, bob):
    client = make_app(VISIBLE_TO=[alice.urn]).test_client()
    assert client.get("/", headers=alice.headers).status_code == 200
    refused = client.get("/", headers=bob.headers)
    assert refused.status_code == 403 and refused.json == FORBIDDEN_VIEW
    assert_no_schema(refused)
    assert run(client, bob).status_code == 202  # may still run: RUNNABLE_BY says so


def test_visible_to_a_group(make_app, globus, alice, bob):
    client = make_app(VISIBLE_TO=[globus.group(bob)]).test_client()
    assert client.get("/", headers=bob.headers).status_code == 200
    assert client.get("/", headers=alice.headers).status_code == 403


def test_public_introspection_needs_no_token(make_app, globus, alice):
    client = make_app(VISIBLE_TO=["public"]).test_client()
    for headers in ({}, {"Authorization": "Bearer not-a-token-anyone-knows"}, alice.headers):
        answer = client.get("/", headers=headers)
        assert answer.status_code == 200 and answer.json["visible_to"] == ["public"]
    assert globus.introspections == 0  # the library's way: the token is not even looked at


def test_public_is_for_the_introspection_only(make_app, alice):
    client = make_app(VISIBLE_TO=["public"]).test_client()
    action_id = start(client, alice)
    for method, path in [("POST", "/run"), ("POST", "/actions"), ("GET", "/actions"),
                         ("GET", f"/{action_id}/status"), ("GET", f"/actions/{action_id}"),
                         ("GET", f"/{action_id}/log"), ("POST", f"/{action_id}/cancel"),
                         ("POST", f"/{action_id}/release")]:
        answer = client.open(path, method=method, json={"request_id": "r"})
        assert answer.status_code == 401, (method, path)
        assert answer.json["code"] == "UnauthorizedRequest"


def test_cors_preflight_needs_no_token_whoever_may_see(make_app, globus, alice):
    client = make_app(VISIBLE_TO=[alice.urn]).test_client()
    answer = client.options("/", headers={"Origin": "https://app.example"})
    assert answer.status_code == 204 and globus.introspections == 0


# --- the introspection document ---------------------------------------------------------
def test_the_settings_are_published(make_app, globus, alice):
    group = globus.group(alice)
    visible, runnable = ["public", alice.urn], [group, alice.urn]
    document = make_app(VISIBLE_TO=visible, RUNNABLE_BY=runnable).test_client().get("/").json
    assert document["visible_to"] == visible and document["runnable_by"] == runnable
    assert_conforms(document, "ProviderDescription")  # without "all_authenticated_users"


def test_the_bounds_leave_the_published_input_schema_alone(make_app, alice):
    with open("schema.json") as f:
        schema = json.load(f)
    for bounds in ({}, {"MAX_PRINCIPALS": 1, "MAX_TAGS": 0, "MAX_TAG_BYTES": 1,
                        "MAX_REQUEST_ID_LENGTH": 1}):
        document = make_app(**bounds).test_client().get("/", headers=alice.headers).json
        assert document["input_schema"] == schema

