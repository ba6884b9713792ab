"""Resume (POST /<id>/resume, POST /actions/<id>/resume), on every store, and
the 404 of a path that matches no route.

Our actions never become INACTIVE, so resuming a running action changes
nothing (200, its status) and resuming a completed one is a 409, as a cancel
is; resuming needs manage rights, like cancel.
"""

from __future__ import annotations

import uuid

import pytest
import requests
from globus_action_provider_tools.flask.exceptions import ActionConflict, ActionNotFound

from tests.server import gunicorn
from tests.test_actions import ALICE, BOB, Caller, service
from tests.test_actions import request as run_request

RESUME_PATHS = ("/{}/resume", "/actions/{}/resume")


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    return request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "postgres_url"}[
        request.param
    ])


@pytest.fixture
def store_client(make_app, store_url):  # type: ignore[no-untyped-def]
    """A test client of an app on each store; actions take 10 s and succeed."""
    app = make_app(
        STORE_URL=store_url, FAILURE_RATE=0.0, MIN_DELAY_SECONDS=10, MAX_DELAY_SECONDS=10
    )
    yield app.test_client()
    app.extensions["store"].close()


def start(client, user, **extra) -> str:  # type: ignore[no-untyped-def]
    request = {"request_id": str(uuid.uuid4()), "body": {"utc_offset": 5.5}, **extra}
    response = client.post("/run", headers=user.headers, json=request)
    assert response.status_code == 202, response.json
    return response.json["action_id"]


# --- on every store ----------------------------------------------------------------
@pytest.mark.parametrize("path", RESUME_PATHS)
def test_resuming_a_running_action_changes_nothing(store_client, alice, clock, path):
    action_id = start(store_client, alice)
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


@pytest.mark.parametrize("path", RESUME_PATHS)
def test_resuming_needs_a_valid_token(client, alice, globus, path):
    action_id = start(client, alice)
    stale = globus.user("stale", active=False)
    elsewhere = globus.user("elsewhere", scope="urn:globus:auth:scope:transfer.api.globus.org:all")
    for headers in (
        {}, {"Authorization": "Bearer not-a-token-anyone-has"}, stale.headers, elsewhere.headers
    ):
        response = client.post(path.format(action_id), headers=headers)
        assert response.status_code == 401 and response.json["code"] == "UnauthorizedRequest"
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_resume_answers_post_only(client, alice):
    action_id = start(client, alice)
    for path in RESUME_PATHS:
        response = client.get(path.format(action_id), headers=alice.headers)
        assert response.status_code == 405 and "POST" in response.headers["Allow"]


def test_resume_requests_are_counted_by_route(client, alice):
    action_id = start(client, alice)
    for path in RESUME_PATHS:
        client.post(path.format(action_id), headers=alice.headers)
    metrics = client.get("/metrics").get_data(as_text=True)
    for route in ("/<action_id>/resume", "/actions/<action_id>/resume"):
        line = f'http_requests_total{{method="POST",route="{route}",status="200"}} 1.0'
        assert line in metrics, route


# --- the rule alone -----------------------------------------------------------------
def test_the_resume_rule(clock):
    rules = service(clock, FAILURE_RATE=1.0)
    started, _ = rules.run(run_request(), Caller(ALICE))
    action_id = started["action_id"]
    assert rules.resume(action_id, Caller(ALICE)) == started
    with pytest.raises(ActionNotFound):
        rules.resume(action_id, Caller(BOB))
    clock.advance(10)
    assert rules.status(action_id, Caller(ALICE))["status"] == "FAILED"
    with pytest.raises(ActionConflict, match="already completed"):
        rules.resume(action_id, Caller(ALICE))


# --- paths that match no route ------------------------------------------------------
UNROUTED = ["/does/not/exist", "/actions/x/y/z", "/run/", "/healthz/", "/x/resume/", "/a/b"]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def test_a_path_no_route_matches_is_404_not_found(client, alice):
    """Not ``ActionNotFound``: a client can tell a wrong URL from a missing action."""
    for path in UNROUTED:
        for method in METHODS:
            for headers in (alice.headers, {}):
                response = client.open(path, method=method, headers=headers)
                assert response.status_code == 404, (method, path)
                assert response.json == {
                    "code": "NotFound", "description": "No such path on this provider."
                }, (method, path)
        head = client.head(path, headers=alice.headers)
        assert head.status_code == 404 and head.content_type == "application/json"


def test_metrics_disabled_is_404_not_found(make_app, alice):
    client = make_app(METRICS_ENABLED=False).test_client()
    response = client.get("/metrics")
    assert response.status_code == 404 and response.json["code"] == "NotFound"


@pytest.mark.e2e
def test_resume_and_unrouted_paths_through_gunicorn():
    alice = {"Authorization": "Bearer dev-token-alice"}
    bob = {"Authorization": "Bearer dev-token-bob"}
    with gunicorn({"FLASK_MIN_DELAY_SECONDS": "60", "FLASK_MAX_DELAY_SECONDS": "60"}) as url:
        request = {"request_id": str(uuid.uuid4()), "body": {"utc_offset": -3}}
        action = requests.post(f"{url}/run", json=request, headers=alice, timeout=5).json()
        action_id = action["action_id"]
        for path in RESUME_PATHS:
            # What clients send: POST, no body, no Content-Type.
            resumed = requests.post(url + path.format(action_id), headers=alice, timeout=5)
            assert resumed.status_code == 200 and resumed.json() == action
            other = requests.post(url + path.format(action_id), headers=bob, timeout=5)
            assert other.status_code == 404 and other.json()["code"] == "ActionNotFound"
            anonymous = requests.post(url + path.format(action_id), timeout=5)
            assert anonymous.status_code == 401 and anonymous.json()["code"] == (
                "UnauthorizedRequest"
            )
        requests.post(f"{url}/{action_id}/cancel", headers=alice, timeout=5)
        done = requests.post(f"{url}/actions/{action_id}/resume", headers=alice, timeout=5)
        assert done.status_code == 409 and done.json()["code"] == "ActionConflict"
        for path in UNROUTED:
            for method in METHODS:
                response = requests.request(method, url + path, headers=alice, timeout=5)
                assert response.status_code == 404, (method, path)
                assert response.headers["Content-Type"] == "application/json"
                assert response.json()["code"] == "NotFound", (method, path)
