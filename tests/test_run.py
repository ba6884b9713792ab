"""Starting an action (POST /run, POST /actions): the status it answers,
retries and conflicts of a request_id, what a run request may set (offsets,
label, tags, release_after, monitor_by/manage_by, deadline). Refused run
requests: test_validation.py."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import pytest

from tests.helpers import assert_status_document, run


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
    for _ in range(50):
        details = run(client, alice).json["details"]
        eta = datetime.fromisoformat(details["estimated_completion_time"])
        assert 5 <= (eta - clock.now).total_seconds() <= 900


# --- retries and conflicts ---------------------------------------------------------------
def test_repeat_of_a_request_is_200_with_the_same_action(client, alice):
    first = run(client, alice, request_id="again")
    second = run(client, alice, request_id="again")
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json["action_id"] == second.json["action_id"]


def test_repeat_run_after_completion_returns_the_completed_status(make_app, alice, clock):
    client = make_app(FAILURE_RATE=0.0, MIN_DELAY_SECONDS=1, MAX_DELAY_SECONDS=1).test_client()
    run(client, alice, request_id="once")
    clock.advance(2)
    again = run(client, alice, request_id="once")
    assert again.status_code == 200 and again.json["status"] == "SUCCEEDED"


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


def test_both_path_styles_share_one_action_space(client, alice):
    request = {"request_id": "shared", "body": {"utc_offset": 1}}
    first = client.post("/run", headers=alice.headers, json=request)
    second = client.post("/actions", headers=alice.headers, json=request)
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json["action_id"] == second.json["action_id"]
    changed = client.post("/actions", headers=alice.headers, json={**request, "label": "x"})
    assert changed.status_code == 409


# --- what a run request may set ----------------------------------------------------------
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


def test_deadline_caps_the_estimated_completion(client, alice, clock):
    deadline = clock.now + timedelta(seconds=6)
    status = client.post(
        "/actions",
        headers=alice.headers,
        json={"request_id": "d", "body": {"utc_offset": 1}, "deadline": deadline.isoformat()},
    ).json
    estimated = datetime.fromisoformat(status["details"]["estimated_completion_time"])
    assert estimated <= deadline
    clock.advance(6)
    assert client.get(f"/actions/{status['action_id']}", headers=alice.headers).json[
        "status"
    ] in ("SUCCEEDED", "FAILED")
