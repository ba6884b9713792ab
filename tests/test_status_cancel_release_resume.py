"""Following an action: its status (the result appears only once the
estimated time has passed), cancel, release (also automatic, after
release_after) and resume, on both path styles. Resume on every store: our
actions never become INACTIVE, so resuming a running action changes nothing
(200, its status) and resuming a completed one is a 409, as a cancel is;
resuming needs manage rights, like cancel. Who may see or manage an action:
test_auth_and_dev_mode.py."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import pytest

from tests.helpers import RESUME_PATHS, assert_status_document, run, start


# --- status: the result appears only once the estimated time has passed ------------------
def completes_at(status):
    return datetime.fromisoformat(status["details"]["estimated_completion_time"])


def test_success_is_revealed_only_after_the_estimate(make_app, alice, clock):
    client = make_app(FAILURE_RATE=0.0).test_client()
    started = run(client, alice, body={"utc_offset": "+02:00"}).json
    eta = completes_at(started)
    clock.now = eta - timedelta(microseconds=1)
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


def test_unknown_action_is_404(client, alice):
    for method, path in [
        ("get", "/no-such-action/status"),
        ("post", "/no-such-action/cancel"),
        ("post", "/no-such-action/release"),
    ]:
        response = getattr(client, method)(path, headers=alice.headers)
        assert response.status_code == 404
        assert response.json["code"] == "ActionNotFound"


# --- cancel and release ------------------------------------------------------------------
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


# --- the /actions paths ------------------------------------------------------------------
def test_lifecycle_on_the_new_paths(make_app, alice, clock):
    client = make_app(FAILURE_RATE=0.0, MIN_DELAY_SECONDS=10, MAX_DELAY_SECONDS=10).test_client()
    request = {"request_id": "new-style", "body": {"utc_offset": "+05:30"}}
    started = client.post("/actions", headers=alice.headers, json=request)
    assert started.status_code == 202
    assert_status_document(started.json)
    action_id = started.json["action_id"]
    repeat = client.post("/actions", headers=alice.headers, json=request)
    assert repeat.status_code == 200 and repeat.json["action_id"] == action_id

    status = client.get(f"/actions/{action_id}", headers=alice.headers)
    assert status.status_code == 200 and status.json["status"] == "ACTIVE"
    assert client.delete(f"/actions/{action_id}", headers=alice.headers).status_code == 409

    clock.advance(10)
    done = client.get(f"/actions/{action_id}", headers=alice.headers).json
    assert done["status"] == "SUCCEEDED" and done["details"]["whattimeisit"].endswith("+05:30")
    released = client.delete(f"/actions/{action_id}", headers=alice.headers)
    assert released.status_code == 200 and released.json == done
    assert client.get(f"/actions/{action_id}", headers=alice.headers).status_code == 404
    assert client.get(f"/{action_id}/status", headers=alice.headers).status_code == 404


def test_cancel_on_the_new_path(client, alice):
    action_id = start(client, alice)
    cancelled = client.post(f"/actions/{action_id}/cancel", headers=alice.headers)
    assert cancelled.status_code == 200
    assert_status_document(cancelled.json)
    assert cancelled.json["details"]["error"] == "CANCELLED"
    again = client.post(f"/actions/{action_id}/cancel", headers=alice.headers)
    assert again.status_code == 409


# --- resume, on every store --------------------------------------------------------------
@pytest.fixture
def store_client(make_app, store_url):  # type: ignore[no-untyped-def]
    """A test client of an app on each store; actions take 10 s and succeed."""
    app = make_app(
        STORE_URL=store_url, FAILURE_RATE=0.0, MIN_DELAY_SECONDS=10, MAX_DELAY_SECONDS=10
    )
    yield app.test_client()
    app.extensions["store"].close()


@pytest.mark.parametrize("path", RESUME_PATHS)
def test_resuming_a_running_action_changes_nothing(store_client, alice, clock, path):
    action_id = start(store_client, alice, body={"utc_offset": 5.5})
    before = store_client.get(f"/{action_id}/status", headers=alice.headers).json
    clock.advance(3)
    resumed = store_client.post(path.format(action_id), headers=alice.headers)
    assert resumed.status_code == 200 and resumed.is_json
    assert resumed.json == before
    assert resumed.json["status"] == "ACTIVE"
    # Still running, and it still completes when it would have.
    assert store_client.get(f"/{action_id}/status", headers=alice.headers).json == before
    clock.advance(7)
    after = store_client.get(f"/{action_id}/status", headers=alice.headers).json
    assert after["status"] == "SUCCEEDED" and after["details"]["whattimeisit"].endswith("+05:30")


@pytest.mark.parametrize("path", RESUME_PATHS)
def test_resuming_a_completed_action_is_409(store_client, alice, clock, path):
    succeeded, cancelled = start(store_client, alice), start(store_client, alice)
    assert store_client.post(f"/{cancelled}/cancel", headers=alice.headers).status_code == 200
    resumed = store_client.post(path.format(cancelled), headers=alice.headers)
    assert resumed.status_code == 409 and resumed.json["code"] == "ActionConflict"
    clock.advance(10)
    final = store_client.get(f"/{succeeded}/status", headers=alice.headers).json
    resumed = store_client.post(path.format(succeeded), headers=alice.headers)
    assert resumed.status_code == 409 and resumed.json["code"] == "ActionConflict"
    assert store_client.get(f"/{succeeded}/status", headers=alice.headers).json == final


@pytest.mark.parametrize("path", RESUME_PATHS)
def test_resuming_needs_manage_rights(store_client, alice, bob, globus, path):
    group = str(uuid.uuid4())
    member = globus.user("member", groups=[group])
    monitor = globus.user("monitor")
    action_id = start(
        store_client, alice,
        monitor_by=[monitor.urn], manage_by=[bob.urn, f"urn:globus:groups:id:{group}"],
    )
    outsider = globus.user("outsider")
    for user in (outsider, monitor):  # a monitor may see it, not manage it
        response = store_client.post(path.format(action_id), headers=user.headers)
        assert response.status_code == 404, user.name
        assert response.json == {
            "code": "ActionNotFound", "description": f"No action with id {action_id}"
        }
    for user in (alice, bob, member):
        response = store_client.post(path.format(action_id), headers=user.headers)
        assert response.status_code == 200 and response.json["action_id"] == action_id, user.name


@pytest.mark.parametrize("path", RESUME_PATHS)
def test_resuming_an_unknown_or_released_action_is_404(store_client, alice, clock, path):
    action_id = start(store_client, alice)
    clock.advance(10)
    assert store_client.post(f"/{action_id}/release", headers=alice.headers).status_code == 200
    for unknown in (action_id, str(uuid.uuid4()), "no-such-action"):
        response = store_client.post(path.format(unknown), headers=alice.headers)
        assert response.status_code == 404 and response.json["code"] == "ActionNotFound"
