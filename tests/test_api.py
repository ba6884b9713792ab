"""The five routes through Flask's test client, with Globus faked over HTTP."""

from __future__ import annotations

import json
import uuid

import pytest
from globus_action_provider_tools.data_types import ActionStatus

from app.testing import SCOPE
from tests.spec import assert_conforms


def run(client, user, body=None, request_id=None, **extra):
    document = {
        "request_id": request_id or str(uuid.uuid4()),
        "body": {"utc_offset": 1} if body is None else body,
        **extra,
    }
    return client.post("/run", headers=user.headers, json=document)


def assert_status_document(document):
    assert_conforms(document, "ActionStatus")
    ActionStatus.parse_obj(document)  # the library's model accepts it too
    assert None not in document.values()
    assert "private" not in json.dumps(document)


# --- introspection -----------------------------------------------------------
def test_introspection_document(client, alice):
    response = client.get("/", headers=alice.headers)
    assert response.status_code == 200
    document = response.json
    assert document["title"] == "What Time Is It Right Now?"
    assert document["subtitle"].startswith("From the makers of Philbert")
    assert document["synchronous"] is False
    assert document["globus_auth_scope"] == SCOPE
    assert document["types"] == ["Action"]
    assert document["visible_to"] == ["all_authenticated_users"]
    assert document["runnable_by"] == ["all_authenticated_users"]
    assert document["keywords"] == ["time", "whattimeisitnow", "productivity"]
    with open("schema.json") as f:
        assert document["input_schema"] == json.load(f)
    assert None not in document.values()
    # Every field but visible_to (the sample's deliberate choice) meets the spec.
    assert_conforms({**document, "visible_to": []}, "ProviderDescription")


def test_introspection_needs_a_token(client):
    response = client.get("/")
    assert response.status_code == 401
    assert response.json["code"] == "UnauthorizedRequest"
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    ["Bearer short", "Basic abcdefghijklmnop", "Bearer token-nobody-knows-about", "Bearer "],
)
def test_bad_tokens_are_401_json(client, header):
    response = client.get("/", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.is_json and set(response.json) == {"code", "description"}


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR", "Bearer"])
def test_the_bearer_scheme_is_case_insensitive(client, alice, scheme):
    """RFC 9110: the auth scheme is case-insensitive; the library wants "Bearer "."""
    for header in (f"{scheme} {alice.token}", f"  {scheme}   {alice.token}  "):
        assert client.get("/", headers={"Authorization": header}).status_code == 200, header


@pytest.mark.parametrize("header", ["bearer", "bearer short", "bearertoken-nobody-knows"])
def test_a_lowercase_scheme_is_still_checked(client, header):
    response = client.get("/", headers={"Authorization": header})
    assert response.status_code == 401 and response.json["code"] == "UnauthorizedRequest"


def test_token_without_the_provider_scope_is_401(client, globus):
    outsider = globus.user("outsider", scope="urn:globus:auth:scope:transfer.api.globus.org:all")
    response = client.get("/", headers=outsider.headers)
    assert response.status_code == 401
    assert "scope" in response.json["description"]


def test_inactive_token_is_401(client, globus):
    revoked = globus.user("revoked", active=False)
    assert client.get("/", headers=revoked.headers).status_code == 401


# --- run -----------------------------------------------------------------------
def test_run_starts_an_action(client, alice, clock):
    response = run(client, alice, label="my label")
    assert response.status_code == 202
    status = response.json
    assert_status_document(status)
    assert status["status"] == "ACTIVE"
    assert status["creator_id"] == alice.urn
    assert status["label"] == "my label"
    assert status["monitor_by"] == [alice.urn] and status["manage_by"] == [alice.urn]
    assert status["release_after"] == "P30D"
    assert status["start_time"] == clock.now.isoformat()
    assert "T" in status["start_time"] and status["start_time"].endswith("+00:00")
    assert "completion_time" not in status
    assert set(status["details"]) == {"estimated_completion_time"}


def test_estimated_completion_is_within_configured_delays(make_app, alice, clock):
    client = make_app(MIN_DELAY_SECONDS=5, MAX_DELAY_SECONDS=900).test_client()
    from datetime import datetime

    for _ in range(50):
        details = run(client, alice).json["details"]
        eta = datetime.fromisoformat(details["estimated_completion_time"])
        assert 5 <= (eta - clock.now).total_seconds() <= 900


def test_repeat_of_a_request_is_200_with_the_same_action(client, alice):
    first = run(client, alice, request_id="again")
    second = run(client, alice, request_id="again")
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json["action_id"] == second.json["action_id"]


def test_same_request_id_different_body_is_409(client, alice):
    assert run(client, alice, request_id="r", body={"utc_offset": 1}).status_code == 202
    response = run(client, alice, request_id="r", body={"utc_offset": 2})
    assert response.status_code == 409
    assert response.json["code"] == "ActionConflict"


def test_same_request_id_different_label_is_409(client, alice):
    assert run(client, alice, request_id="r", label="one").status_code == 202
    assert run(client, alice, request_id="r", label="two").status_code == 409


def test_request_ids_are_scoped_to_the_caller(client, alice, bob):
    a = run(client, alice, request_id="shared")
    b = run(client, bob, request_id="shared")
    assert (a.status_code, b.status_code) == (202, 202)
    assert a.json["action_id"] != b.json["action_id"]
    assert b.json["creator_id"] == bob.urn


def test_request_id_equal_to_an_action_id_is_a_new_request(client, alice):
    """Seed bug: request_ids and action_ids shared one key space and crashed."""
    action_id = run(client, alice).json["action_id"]
    response = run(client, alice, request_id=action_id)
    assert response.status_code == 202
    assert response.json["action_id"] != action_id
    status = client.get(f"/{action_id}/status", headers=alice.headers)
    assert status.status_code == 200 and status.json["action_id"] == action_id


def test_a_request_id_is_not_an_action_id(client, alice):
    run(client, alice, request_id="my-request")
    assert client.get("/my-request/status", headers=alice.headers).status_code == 404


@pytest.mark.parametrize(
    ("offset", "expected_suffix"),
    [
        (5.5, "+05:30"),
        (-3.75, "-03:45"),
        ("+05:30", "+05:30"),
        ("-3", "-03:00"),
        ("5.5", "+05:30"),
        (14, "+14:00"),
        (-12, "-12:00"),
        (0, "+00:00"),
        ("09", "+09:00"),
    ],
)
def test_utc_offsets_accepted(make_app, alice, clock, offset, expected_suffix):
    client = make_app(FAILURE_RATE=0.0, MIN_DELAY_SECONDS=5, MAX_DELAY_SECONDS=5).test_client()
    action_id = run(client, alice, body={"utc_offset": offset}).json["action_id"]
    clock.advance(5)
    status = client.get(f"/{action_id}/status", headers=alice.headers).json
    assert status["status"] == "SUCCEEDED"
    assert status["details"]["whattimeisit"].endswith(expected_suffix)


@pytest.mark.parametrize(
    "body",
    [
        {"utc_offset": None},  # seed: 500
        {"utc_offset": 1e300},  # seed: 500
        {"utc_offset": "banana"},
        {"utc_offset": "+14:30"},
        {"utc_offset": -12.5},
        {"utc_offset": 15},
        {"utc_offset": True},
        {"utc_offset": [1]},
        {"utc_offset": "5\n"},
        {},
        {"utc_offset": 1, "extra": 2},
    ],
)
def test_invalid_bodies_are_400(client, alice, body):
    response = run(client, alice, body=body)
    assert response.status_code == 400
    assert response.json["code"] == "BadActionRequest"
    assert "$.body" in response.json["description"]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[]",
        b'"a string"',
        b'{"request_id": "x", "body": {"utc_offset": NaN}}',
        b'{"request_id": "x", "body": {"utc_offset": Infinity}}',
        b'{"request_id": "x", "body": {"utc_offset": 1e999}}',
        b'{"request_id": "x", "body": {"utc_offset": 1' + b"0" * 5000 + b"}}",
        b"[" * 30000 + b"]" * 30000,
        b"\xff\xfe{}",
        b'{"request_id": "x"}',
        b'{"body": {"utc_offset": 1}}',
        b'{"request_id": 5, "body": {"utc_offset": 1}}',
        b'{"request_id": "", "body": {"utc_offset": 1}}',
        b'{"request_id": "x", "body": []}',
        b'{"request_id": "x", "body": {"utc_offset": 1}, "unknown": 1}',
        b'{"request_id": "x", "body": {"utc_offset": 1}, "label": ""}',
        b'{"request_id": "x", "body": {"utc_offset": 1}, "monitor_by": ["bob"]}',
        b'{"request_id": "x", "body": {"utc_offset": 1}, "manage_by": "not-a-list"}',
        b'{"request_id": "x", "body": {"utc_offset": 1}, "release_after": "soon"}',
        b'{"request_id": "x", "body": {"utc_offset": 1}, "deadline": "tomorrow"}',
    ],
)
def test_malformed_run_requests_are_400(client, alice, raw):
    response = client.post(
        "/run", headers={**alice.headers, "Content-Type": "application/json"}, data=raw
    )
    assert response.status_code == 400, response.json
    assert response.is_json and set(response.json) == {"code", "description"}


def test_request_id_length_is_limited(client, alice):
    assert run(client, alice, request_id="x" * 256).status_code == 202
    assert run(client, alice, request_id="x" * 257).status_code == 400


def test_label_longer_than_64_is_400(client, alice):
    assert run(client, alice, label="x" * 64).status_code == 202
    assert run(client, alice, label="x" * 65).status_code == 400


def test_validation_errors_do_not_echo_values(client, alice):
    secret = "s3cr3t-value-that-must-not-come-back"
    response = run(client, alice, body={"utc_offset": secret})
    assert response.status_code == 400
    assert secret not in response.get_data(as_text=True)


def test_run_without_content_type_still_parses(client, alice):
    body = json.dumps({"request_id": "plain", "body": {"utc_offset": 2}})
    response = client.post("/run", headers=alice.headers, data=body)
    assert response.status_code == 202


def test_tags_from_the_automate_client_are_accepted(client, alice):
    assert run(client, alice, tags=["a", "b"]).status_code == 202


def test_release_after_from_the_request(client, alice):
    response = run(client, alice, release_after="P2D")
    assert response.status_code == 202
    assert response.json["release_after"] == "P2D"
    assert run(client, alice, release_after="P1000D").status_code == 400


def test_monitor_and_manage_by_are_kept(client, alice, bob):
    response = run(client, alice, monitor_by=[bob.urn], manage_by=[bob.urn])
    assert response.json["monitor_by"] == [bob.urn]
    assert response.json["manage_by"] == [bob.urn]


def test_linked_identities_monitor_by_default(client, globus):
    carol = globus.user("carol", linked=[str(uuid.uuid4())])
    status = run(client, carol).json
    assert sorted(status["monitor_by"]) == sorted(
        [carol.urn, f"urn:globus:auth:identity:{carol.linked[0]}"]
    )


# --- status: the result appears only once the estimated time has passed ------
def completes_at(status):
    from datetime import datetime

    return datetime.fromisoformat(status["details"]["estimated_completion_time"])


def test_success_is_revealed_only_after_the_estimate(make_app, alice, clock):
    client = make_app(FAILURE_RATE=0.0).test_client()
    started = run(client, alice, body={"utc_offset": "+02:00"}).json
    eta = completes_at(started)
    clock.now = eta - __import__("datetime").timedelta(microseconds=1)
    early = client.get(f"/{started['action_id']}/status", headers=alice.headers).json
    assert early["status"] == "ACTIVE"
    assert "whattimeisit" not in json.dumps(early)
    clock.now = eta
    done = client.get(f"/{started['action_id']}/status", headers=alice.headers).json
    assert_status_document(done)
    assert done["status"] == "SUCCEEDED"
    assert done["completion_time"] == eta.isoformat()
    assert done["details"] == {"whattimeisit": "2026-01-02T05:04:05.678901+02:00"}


def test_failure_is_watchless(make_app, alice, clock):
    client = make_app(FAILURE_RATE=1.0, MIN_DELAY_SECONDS=1, MAX_DELAY_SECONDS=1).test_client()
    action_id = run(client, alice).json["action_id"]
    clock.advance(1)
    status = client.get(f"/{action_id}/status", headers=alice.headers).json
    assert_status_document(status)
    assert status["status"] == "FAILED"
    assert status["details"] == {
        "message": "We didn't know what time it was.",
        "error": "WATCHLESS",
    }


def test_failure_rate_is_about_thirty_percent(make_app, alice, clock):
    client = make_app(MIN_DELAY_SECONDS=1, MAX_DELAY_SECONDS=1).test_client()
    ids = [run(client, alice).json["action_id"] for _ in range(400)]
    clock.advance(1)
    failed = sum(
        client.get(f"/{i}/status", headers=alice.headers).json["status"] == "FAILED" for i in ids
    )
    assert 80 <= failed <= 160  # 30 % of 400 = 120


def test_repeat_run_after_completion_returns_the_completed_status(make_app, alice, clock):
    client = make_app(FAILURE_RATE=0.0, MIN_DELAY_SECONDS=1, MAX_DELAY_SECONDS=1).test_client()
    run(client, alice, request_id="once")
    clock.advance(2)
    again = run(client, alice, request_id="once")
    assert again.status_code == 200 and again.json["status"] == "SUCCEEDED"


# --- authorization --------------------------------------------------------------
def test_another_user_gets_404_everywhere(client, alice, bob):
    action_id = run(client, alice).json["action_id"]
    for method, path in [
        ("get", f"/{action_id}/status"),
        ("post", f"/{action_id}/cancel"),
        ("post", f"/{action_id}/release"),
    ]:
        response = getattr(client, method)(path, headers=bob.headers)
        assert response.status_code == 404, path  # seed: 500
        assert response.json["code"] == "ActionNotFound"
    assert client.get(f"/{action_id}/status", headers=alice.headers).json["status"] == "ACTIVE"


def test_monitor_by_may_see_but_not_manage(client, alice, bob):
    action_id = run(client, alice, monitor_by=[bob.urn]).json["action_id"]
    assert client.get(f"/{action_id}/status", headers=bob.headers).status_code == 200
    assert client.post(f"/{action_id}/cancel", headers=bob.headers).status_code == 404


def test_manage_by_may_cancel_and_release(client, alice, bob):
    action_id = run(client, alice, manage_by=[bob.urn]).json["action_id"]
    assert client.post(f"/{action_id}/cancel", headers=bob.headers).status_code == 200
    assert client.post(f"/{action_id}/release", headers=bob.headers).status_code == 200


def test_group_principals_authorize_members(client, globus, alice):
    group = str(uuid.uuid4())
    member = globus.user("member", groups=[group])
    outsider = globus.user("outsider", groups=[str(uuid.uuid4())])
    group_urn = f"urn:globus:groups:id:{group}"
    action_id = run(client, alice, monitor_by=[group_urn], manage_by=[group_urn]).json["action_id"]
    assert client.get(f"/{action_id}/status", headers=member.headers).status_code == 200
    assert client.get(f"/{action_id}/status", headers=outsider.headers).status_code == 404
    assert client.post(f"/{action_id}/cancel", headers=member.headers).status_code == 200
    assert globus.group_lookups >= 2


def test_unknown_action_is_404(client, alice):
    for method, path in [
        ("get", "/no-such-action/status"),
        ("post", "/no-such-action/cancel"),
        ("post", "/no-such-action/release"),
    ]:
        response = getattr(client, method)(path, headers=alice.headers)
        assert response.status_code == 404
        assert response.json["code"] == "ActionNotFound"


# --- cancel and release -----------------------------------------------------------
def test_cancel_with_no_body(client, alice, clock):
    action_id = run(client, alice).json["action_id"]
    response = client.post(f"/{action_id}/cancel", headers={**alice.headers, "Content-Length": "0"})
    assert response.status_code == 200
    status = response.json
    assert_status_document(status)
    assert status["status"] == "FAILED"
    assert status["details"] == {"message": "Job cancelled", "error": "CANCELLED"}
    assert status["completion_time"] == clock.now.isoformat()


def test_cancel_twice_is_409(client, alice):
    action_id = run(client, alice).json["action_id"]
    assert client.post(f"/{action_id}/cancel", headers=alice.headers).status_code == 200
    assert client.post(f"/{action_id}/cancel", headers=alice.headers).status_code == 409


def test_cancel_after_completion_is_409(make_app, alice, clock):
    client = make_app(MIN_DELAY_SECONDS=1, MAX_DELAY_SECONDS=1).test_client()
    action_id = run(client, alice).json["action_id"]
    clock.advance(1)
    response = client.post(f"/{action_id}/cancel", headers=alice.headers)
    assert response.status_code == 409 and response.json["code"] == "ActionConflict"


def test_release_of_running_action_is_409(client, alice):
    action_id = run(client, alice).json["action_id"]
    response = client.post(f"/{action_id}/release", headers=alice.headers)
    assert response.status_code == 409
    assert client.get(f"/{action_id}/status", headers=alice.headers).status_code == 200


def test_release_returns_final_status_then_404(make_app, alice, clock):
    client = make_app(FAILURE_RATE=0.0, MIN_DELAY_SECONDS=1, MAX_DELAY_SECONDS=1).test_client()
    action_id = run(client, alice).json["action_id"]
    clock.advance(1)
    released = client.post(f"/{action_id}/release", headers=alice.headers)
    assert released.status_code == 200
    assert_status_document(released.json)
    assert released.json["status"] == "SUCCEEDED"
    for method, path in [("get", "status"), ("post", "cancel"), ("post", "release")]:
        assert (
            getattr(client, method)(f"/{action_id}/{path}", headers=alice.headers).status_code
            == 404
        )


def test_request_id_can_be_reused_after_release(client, alice):
    """Seed bug: a released request_id could never start a new action."""
    first = run(client, alice, request_id="reuse").json["action_id"]
    client.post(f"/{first}/cancel", headers=alice.headers)
    assert client.post(f"/{first}/release", headers=alice.headers).status_code == 200
    again = run(client, alice, request_id="reuse")
    assert again.status_code == 202 and again.json["action_id"] != first


def test_automatic_release_after_release_after(make_app, alice, clock):
    client = make_app(MIN_DELAY_SECONDS=1, MAX_DELAY_SECONDS=1).test_client()
    action_id = run(client, alice, release_after="PT1H").json["action_id"]
    clock.advance(1 + 3600 - 1)
    assert client.get(f"/{action_id}/status", headers=alice.headers).status_code == 200
    clock.advance(1)
    assert client.get(f"/{action_id}/status", headers=alice.headers).status_code == 404


# --- HTTP-level errors are JSON ---------------------------------------------------
def test_unknown_route_is_404_json(client, alice):
    response = client.get("/does/not/exist", headers=alice.headers)
    assert response.status_code == 404 and response.json["code"] == "NotFound"


def test_wrong_method_is_405_json_with_allow(client, alice):
    response = client.delete("/run", headers=alice.headers)
    assert response.status_code == 405
    assert response.is_json and "POST" in response.headers["Allow"]


def test_too_large_body_is_413_json(client, alice):
    body = json.dumps({"request_id": "big", "body": {"utc_offset": 1}, "label": "x" * 70_000})
    response = client.post("/run", headers=alice.headers, data=body)
    assert response.status_code == 413 and response.is_json


def test_unexpected_error_is_500_json_without_details(app, alice, caplog):
    @app.get("/boom")
    def boom():
        raise RuntimeError("internal detail")

    response = app.test_client().get("/boom", headers=alice.headers)
    assert response.status_code == 500
    assert response.json == {"code": "ActionProviderError", "description": "Internal Server Error"}


def test_no_debug_mode(app):
    assert app.debug is False


def test_tokens_never_reach_the_logs(client, alice, caplog):
    caplog.set_level("DEBUG")
    run(client, alice)
    client.get("/", headers={"Authorization": "Bearer token-nobody-knows-about"})
    assert alice.token not in caplog.text
    assert "token-nobody-knows-about" not in caplog.text
