"""The running server (python -m app, dev mode) driven through a globus-sdk client,
on both path styles."""

from __future__ import annotations

import uuid

import globus_sdk
import pytest

from tests.helpers import completed_status
from tests.sdk_client import WhatTimeClient
from tests.server import serve
from tests.spec import assert_conforms

pytestmark = pytest.mark.e2e
DELAY = 1  # seconds every action runs


@pytest.fixture(scope="module")
def url():
    env = {"FLASK_MIN_DELAY_SECONDS": str(DELAY), "FLASK_MAX_DELAY_SECONDS": str(DELAY)}
    with serve(env) as base:
        yield base


def http_status(call, *args, **kwargs) -> int:
    try:
        return call(*args, **kwargs).http_status
    except globus_sdk.GlobusAPIError as error:
        return error.http_status


@pytest.mark.parametrize("legacy_paths", [False, True], ids=["actions-paths", "legacy-paths"])
def test_lifecycle_through_the_sdk(url, legacy_paths):
    alice = WhatTimeClient(url, "dev-token-alice", legacy_paths=legacy_paths)
    bob = WhatTimeClient(url, "dev-token-bob", legacy_paths=legacy_paths)

    description = alice.introspect()
    assert description["log_supported"] is True and description["synchronous"] is False

    request_id = str(uuid.uuid4())
    started = alice.run({"utc_offset": "+05:30"}, request_id, label="sdk")
    assert started.http_status == 202
    assert_conforms(started.data, "ActionStatus")
    action_id = started["action_id"]
    assert alice.run({"utc_offset": "+05:30"}, request_id, label="sdk").http_status == 200
    doomed = alice.run({"utc_offset": 0}, str(uuid.uuid4()))["action_id"]

    assert alice.status(action_id)["status"] == "ACTIVE"
    assert [e["code"] for e in alice.log(action_id)["entries"]] == ["STARTED"]
    active = {a["action_id"] for a in alice.paginated.list_actions(limit=1).items()}
    assert {action_id, doomed} <= active  # followed the markers, one action a page

    # A second user: 404 on everything, and nothing to enumerate.
    for call in (bob.status, bob.cancel, bob.release, bob.log):
        assert http_status(call, action_id) == 404, call.__name__
    for roles in (None, "creator_id,monitor_by,manage_by"):
        listed = bob.list_actions(status="active,succeeded,failed", roles=roles)
        assert action_id not in {a["action_id"] for a in listed["actions"]}

    cancelled = alice.cancel(doomed)
    assert cancelled["status"] == "FAILED" and cancelled["details"]["error"] == "CANCELLED"
    assert http_status(alice.cancel, doomed) == 409
    assert http_status(alice.release, action_id) == 409  # still running

    final = completed_status(lambda: alice.status(action_id).data)
    assert final["status"] in ("SUCCEEDED", "FAILED")
    log = alice.log(action_id, limit=1)
    assert log["has_next_page"] is True
    rest = alice.log(action_id, limit=1, marker=log["marker"])
    assert rest["entries"][0]["code"] == final["status"] and rest["has_next_page"] is False
    done = alice.list_actions(status="SUCCEEDED,FAILED")
    assert {action_id, doomed} <= {a["action_id"] for a in done["actions"]}

    released = alice.release(action_id)
    assert released.http_status == 200 and released.data == final
    assert http_status(alice.status, action_id) == 404
    assert http_status(alice.log, action_id) == 404
    assert alice.release(doomed).http_status == 200


def test_missing_token_is_refused_through_the_sdk(url):
    anonymous = globus_sdk.BaseClient(base_url=url)
    with pytest.raises(globus_sdk.GlobusAPIError) as refused:
        anonymous.get("/actions")
    assert refused.value.http_status == 401
    assert refused.value.code == "UnauthorizedRequest"
