"""Listing one's actions (GET /actions: status and roles filters, pages)
and an action's log (GET /actions/<id>/log, GET /<id>/log)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from globus_action_provider_tools.data_types import ActionLogReturn

from app.actions import ENUMERATE_SCAN_PAGES
from app.paging import (
    ENUMERATE_DEFAULT_LIMIT,
    ENUMERATE_MAX_LIMIT,
    LOG_DEFAULT_LIMIT,
    encode_marker,
)
from tests.helpers import assert_status_document, start


def listed(client, user, query=""):
    response = client.get(f"/actions{query}", headers=user.headers)
    assert response.status_code == 200, response.json
    return response.json


def ids(page):
    return [action["action_id"] for action in page["actions"]]


# --- enumeration -------------------------------------------------------------------------
def test_enumeration_defaults_to_my_active_actions(make_app, alice, bob, clock):
    client = make_app(MIN_DELAY_SECONDS=10, MAX_DELAY_SECONDS=10).test_client()
    done = start(client, alice)
    clock.advance(10)
    running = [start(client, alice), start(client, alice, path="/run")]
    start(client, bob)
    page = listed(client, alice)
    assert sorted(ids(page)) == sorted(running) and done not in ids(page)
    assert page["has_next_page"] is False and page["marker"] is None
    assert page["limit"] == ENUMERATE_DEFAULT_LIMIT
    for action in page["actions"]:
        assert_status_document(action)
        assert action["status"] == "ACTIVE"


def test_status_filter_is_comma_separated_and_case_insensitive(make_app, alice, clock):
    client = make_app(MIN_DELAY_SECONDS=1, MAX_DELAY_SECONDS=1, FAILURE_RATE=0.5).test_client()
    finished = [start(client, alice) for _ in range(8)]
    cancelled = start(client, alice)
    client.post(f"/actions/{cancelled}/cancel", headers=alice.headers)
    clock.advance(1)
    running = start(client, alice)
    statuses = {i: client.get(f"/actions/{i}", headers=alice.headers).json["status"] for i in
                [*finished, cancelled]}
    succeeded = {i for i, s in statuses.items() if s == "SUCCEEDED"}
    failed = {i for i, s in statuses.items() if s == "FAILED"}
    assert succeeded and len(failed) >= 2  # the cancelled one and a WATCHLESS one

    assert set(ids(listed(client, alice, "?status=SUCCEEDED"))) == succeeded
    assert set(ids(listed(client, alice, "?status=Failed"))) == failed
    both = ids(listed(client, alice, "?status=succeeded,FAILED"))
    assert set(both) == succeeded | failed and running not in both
    repeated = ids(listed(client, alice, "?status=succeeded&status=active"))
    assert set(repeated) == succeeded | {running}
    assert ids(listed(client, alice, "?status=inactive")) == []
    assert ids(listed(client, alice, "?status=")) == [running]  # empty: the default


def test_roles_filter_and_visibility(client, alice, bob):
    watched = start(client, alice, monitor_by=[bob.urn])
    managed_only = start(client, alice, manage_by=[bob.urn])
    own = start(client, bob)
    assert ids(listed(client, bob)) == [own]  # default role: creator_id
    # monitor_by defaults to the creator, so bob's own action is listed too.
    assert set(ids(listed(client, bob, "?roles=monitor_by"))) == {watched, own}
    # bob may manage but not see managed_only (the view rule is creator or
    # monitor_by), so it is not listed even when asked for by role.
    assert managed_only not in ids(listed(client, bob, "?roles=manage_by,monitor_by"))
    assert set(ids(listed(client, bob, "?roles=creator_id,MONITOR_BY"))) == {own, watched}
    # alice created both but is in monitor_by only of the one that kept the default.
    assert ids(listed(client, alice, "?roles=monitor_by")) == [managed_only]
    assert set(ids(listed(client, alice))) == {watched, managed_only}


def test_roles_and_status_are_and_combined(make_app, alice, bob, clock):
    client = make_app(MIN_DELAY_SECONDS=1, MAX_DELAY_SECONDS=1).test_client()
    old = start(client, alice, monitor_by=[bob.urn])
    clock.advance(1)
    new = start(client, alice, monitor_by=[bob.urn])
    start(client, bob)  # bob's own: monitor_by him by default, but ACTIVE
    clock.advance(0.5)
    assert ids(listed(client, bob, "?roles=monitor_by&status=succeeded,failed")) == [old]
    assert new in ids(listed(client, bob, "?roles=monitor_by")) and old not in ids(
        listed(client, bob, "?roles=monitor_by")
    )
    assert ids(listed(client, bob, "?status=succeeded,failed")) == []


def test_groups_are_asked_only_for_group_roles(client, globus, alice):
    group = str(uuid.uuid4())
    member = globus.user("member", groups=[group])
    action_id = start(client, alice, monitor_by=[f"urn:globus:groups:id:{group}"])
    own = start(client, member)
    assert ids(listed(client, member)) == [own]
    assert globus.group_lookups == 0
    assert set(ids(listed(client, member, "?roles=monitor_by"))) == {action_id, own}
    assert globus.group_lookups == 1


@pytest.mark.parametrize(
    "query",
    [
        "?status=bogus",
        "?status=active,faild",
        "?roles=owner",
        "?roles=creator_id,admin",
        "?limit=0",
        "?limit=-1",
        "?limit=ten",
        "?limit=1.5",
        "?marker=not-a-marker!",
        "?marker=bm90IGpzb24",  # base64 of "not json"
        "?marker=WzEsMl0",  # [1,2]
        "?marker=WyIyMDI2LTAxLTAyVDAzOjA0OjA1IiwiYSJd",  # a naive time
        "?marker=" + encode_marker(["9999-12-31T23:59:59-23:59", "a"]),  # not a UTC time
    ],
)
def test_invalid_enumeration_queries_are_400(client, alice, query):
    response = client.get(f"/actions{query}", headers=alice.headers)
    assert response.status_code == 400 and response.json["code"] == "BadActionRequest"
    assert "Query parameter" in response.json["description"]


def test_pages_are_bounded_and_complete(client, alice, clock):
    started = []
    for _ in range(7):
        started.append(start(client, alice))
        clock.advance(0.001)
    seen, markers, query = [], set(), "?limit=3"
    for _ in range(10):
        page = listed(client, alice, query)
        assert len(page["actions"]) <= 3 and page["limit"] == 3
        seen += ids(page)
        if not page["has_next_page"]:
            assert page["marker"] is None
            break
        assert page["marker"] not in markers and alice.token not in page["marker"]
        markers.add(page["marker"])
        query = f"?limit=3&marker={page['marker']}"
    assert seen == started  # oldest first, each once
    assert len(markers) == 2


def test_limit_beyond_the_maximum_is_capped(client, alice):
    start(client, alice)
    page = listed(client, alice, f"?limit={ENUMERATE_MAX_LIMIT + 1}")
    assert page["limit"] == ENUMERATE_MAX_LIMIT
    assert listed(client, alice, "?limit=" + "9" * 5000)["limit"] == ENUMERATE_MAX_LIMIT


def test_paging_skips_past_many_invisible_actions_in_bounded_steps(client, alice, bob, clock):
    """bob manages (but may not see) many actions; each request scans a
    bounded number of them, and following the markers still finds the one he
    may see."""
    hidden = ENUMERATE_SCAN_PAGES * 2 + 1  # more than one request scans at limit=1
    for _ in range(hidden):
        start(client, alice, manage_by=[bob.urn])
        clock.advance(0.001)
    visible = start(client, alice, monitor_by=[bob.urn])
    found, query, requests = [], "?roles=manage_by,monitor_by&limit=1", 0
    while True:
        requests += 1
        page = listed(client, bob, query)
        found += ids(page)
        if not page["has_next_page"]:
            break
        query = f"?roles=manage_by,monitor_by&limit=1&marker={page['marker']}"
    assert found == [visible]
    assert requests > 1  # no single request scanned everything


def test_released_actions_are_not_listed(client, alice):
    action_id = start(client, alice)
    client.post(f"/actions/{action_id}/cancel", headers=alice.headers)
    assert ids(listed(client, alice, "?status=failed")) == [action_id]
    client.delete(f"/actions/{action_id}", headers=alice.headers)
    assert ids(listed(client, alice, "?status=failed")) == []


# --- log ---------------------------------------------------------------------------------
def test_log_follows_the_lifecycle(make_app, alice, clock):
    client = make_app(FAILURE_RATE=0.0, MIN_DELAY_SECONDS=5, MAX_DELAY_SECONDS=5).test_client()
    started_at = clock.now
    action_id = start(client, alice)
    log = client.get(f"/actions/{action_id}/log", headers=alice.headers).json
    ActionLogReturn.parse_obj(log)
    assert [e["code"] for e in log["entries"]] == ["STARTED"]
    assert log["entries"][0]["time"] == started_at.isoformat()
    assert log["has_next_page"] is False and log["marker"] is None
    assert log["limit"] == LOG_DEFAULT_LIMIT
    assert "whattimeisit" not in str(log)  # the result stays private until completion

    clock.advance(5)
    log = client.get(f"/{action_id}/log", headers=alice.headers).json
    ActionLogReturn.parse_obj(log)
    assert [e["code"] for e in log["entries"]] == ["STARTED", "SUCCEEDED"]
    assert log["entries"][1]["time"] == (started_at + timedelta(seconds=5)).isoformat()
    status = client.get(f"/actions/{action_id}", headers=alice.headers).json
    assert log["entries"][1]["details"] == status["details"]
    for entry in log["entries"]:
        assert set(entry) == {"time", "code", "description", "details"}
        datetime.fromisoformat(entry["time"])


def test_log_of_a_failed_and_a_cancelled_action(make_app, alice, clock):
    client = make_app(FAILURE_RATE=1.0, MIN_DELAY_SECONDS=5, MAX_DELAY_SECONDS=5).test_client()
    failed, cancelled = start(client, alice), start(client, alice)
    client.post(f"/actions/{cancelled}/cancel", headers=alice.headers)
    clock.advance(5)
    entries = client.get(f"/actions/{failed}/log", headers=alice.headers).json["entries"]
    assert entries[-1]["code"] == "FAILED" and entries[-1]["details"]["error"] == "WATCHLESS"
    entries = client.get(f"/actions/{cancelled}/log", headers=alice.headers).json["entries"]
    assert [e["code"] for e in entries] == ["STARTED", "CANCELLED"]
    assert entries[-1]["details"]["error"] == "CANCELLED"


def test_log_pages(client, alice):
    action_id = start(client, alice)
    client.post(f"/actions/{action_id}/cancel", headers=alice.headers)
    first = client.get(f"/actions/{action_id}/log?limit=1", headers=alice.headers).json
    assert [e["code"] for e in first["entries"]] == ["STARTED"] and first["has_next_page"]
    second = client.get(
        f"/actions/{action_id}/log?limit=1&marker={first['marker']}", headers=alice.headers
    ).json
    assert [e["code"] for e in second["entries"]] == ["CANCELLED"]
    assert second["has_next_page"] is False and second["marker"] is None
    for query in ("?limit=0", "?marker=xyz!", "?marker=LTE"):  # LTE: -1
        response = client.get(f"/actions/{action_id}/log{query}", headers=alice.headers)
        assert response.status_code == 400 and response.is_json, query


def test_log_access_is_like_status(client, alice, bob):
    watched = start(client, alice, monitor_by=[bob.urn])
    managed_only = start(client, alice, manage_by=[bob.urn])
    assert client.get(f"/actions/{watched}/log", headers=bob.headers).status_code == 200
    assert client.get(f"/actions/{managed_only}/log", headers=bob.headers).status_code == 404
    assert client.get(f"/actions/{managed_only}", headers=bob.headers).status_code == 404
    client.post(f"/actions/{managed_only}/cancel", headers=alice.headers)
    client.delete(f"/actions/{managed_only}", headers=alice.headers)
    assert client.get(f"/{managed_only}/log", headers=alice.headers).status_code == 404
