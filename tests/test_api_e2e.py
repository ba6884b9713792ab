"""The API over real HTTP, against the server (python -m app) in dev mode: the whole lifecycle,
cancel and resume as clients send them, errors as JSON."""

from __future__ import annotations

import uuid

import pytest
import requests

from tests.helpers import DEV_ALICE as ALICE
from tests.helpers import DEV_BOB as BOB
from tests.helpers import METHODS, RESUME_PATHS, UNROUTED, completed_status

pytestmark = pytest.mark.e2e


@pytest.fixture
def url(dev_server) -> str:  # type: ignore[no-untyped-def]
    """The shared dev-mode server (conftest.py), on which actions take 1 s."""
    return str(dev_server.url)


@pytest.mark.parametrize(
    ("server", "outcome"), [("dev_server", "SUCCEEDED"), ("failing_server", "FAILED")]
)
def test_lifecycle_over_http(request, server, outcome):
    url = request.getfixturevalue(server).url
    introspect = requests.get(url + "/", headers=ALICE, timeout=5)
    assert introspect.status_code == 200
    assert introspect.json()["title"] == "What Time Is It Right Now?"

    request = {"request_id": str(uuid.uuid4()), "body": {"utc_offset": "+05:30"}}
    started = requests.post(url + "/run", json=request, headers=ALICE, timeout=5)
    assert started.status_code == 202
    action_id = started.json()["action_id"]
    assert requests.post(url + "/run", json=request, headers=ALICE, timeout=5).status_code == 200

    assert requests.get(f"{url}/{action_id}/status", headers=BOB, timeout=5).status_code == 404
    status = requests.get(f"{url}/{action_id}/status", headers=ALICE, timeout=5).json()
    assert status["status"] == "ACTIVE"

    assert requests.post(f"{url}/{action_id}/release", headers=ALICE, timeout=5).status_code == 409
    final = completed_status(
        lambda: requests.get(f"{url}/{action_id}/status", headers=ALICE, timeout=5).json()
    )
    assert final["status"] == outcome
    if outcome == "SUCCEEDED":
        assert final["details"]["whattimeisit"].endswith("+05:30")
    else:
        assert final["details"] == {
            "error": "WATCHLESS", "message": "We didn't know what time it was."
        }

    released = requests.post(f"{url}/{action_id}/release", headers=ALICE, timeout=5)
    assert released.status_code == 200 and released.json() == final
    assert requests.get(f"{url}/{action_id}/status", headers=ALICE, timeout=5).status_code == 404


def test_cancel_over_http_with_empty_body(url):
    request = {"request_id": str(uuid.uuid4()), "body": {"utc_offset": -3}}
    action_id = requests.post(url + "/run", json=request, headers=ALICE, timeout=5).json()[
        "action_id"
    ]
    # What real clients send: POST, no body, no Content-Type.
    cancelled = requests.post(f"{url}/{action_id}/cancel", headers=ALICE, timeout=5)
    assert cancelled.status_code == 200
    assert cancelled.json()["details"]["error"] == "CANCELLED"


def test_bad_input_over_http_is_json(url):
    response = requests.post(
        url + "/run",
        data=b"{not json",
        headers={**ALICE, "Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert requests.get(url + "/", timeout=5).status_code == 401


def test_resume_and_unrouted_paths_through_the_server(long_actions_server):
    url = long_actions_server.url
    request = {"request_id": str(uuid.uuid4()), "body": {"utc_offset": -3}}
    action = requests.post(f"{url}/run", json=request, headers=ALICE, timeout=5).json()
    action_id = action["action_id"]
    for path in RESUME_PATHS:
        # What clients send: POST, no body, no Content-Type.
        resumed = requests.post(url + path.format(action_id), headers=ALICE, timeout=5)
        assert resumed.status_code == 200 and resumed.json() == action
        other = requests.post(url + path.format(action_id), headers=BOB, timeout=5)
        assert other.status_code == 404 and other.json()["code"] == "ActionNotFound"
        anonymous = requests.post(url + path.format(action_id), timeout=5)
        assert anonymous.status_code == 401 and anonymous.json()["code"] == (
            "UnauthorizedRequest"
        )
    requests.post(f"{url}/{action_id}/cancel", headers=ALICE, timeout=5)
    done = requests.post(f"{url}/actions/{action_id}/resume", headers=ALICE, timeout=5)
    assert done.status_code == 409 and done.json()["code"] == "ActionConflict"
    for path in UNROUTED:
        for method in METHODS:
            response = requests.request(method, url + path, headers=ALICE, timeout=5)
            assert response.status_code == 404, (method, path)
            assert response.headers["Content-Type"] == "application/json"
            assert response.json()["code"] == "NotFound", (method, path)
