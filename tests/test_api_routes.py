"""The newer routes (/actions...), enumeration, the log, CORS, deadline, 405s —
through Flask's test client, with Globus faked over HTTP."""

from __future__ import annotations

import json
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
from tests.spec import assert_conforms
from tests.test_api import assert_status_document


def start(client, user, path="/actions", **extra):
    document = {"request_id": str(uuid.uuid4()), "body": {"utc_offset": 1}, **extra}
    response = client.post(path, headers=user.headers, json=document)
    assert response.status_code == 202, response.json
    return response.json["action_id"]


def listed(client, user, query=""):
    response = client.get(f"/actions{query}", headers=user.headers)
    assert response.status_code == 200, response.json
    return response.json


def ids(page):
    return [action["action_id"] for action in page["actions"]]


# --- new-style paths ------------------------------------------------------------
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


def test_both_path_styles_share_one_action_space(client, alice):
    request = {"request_id": "shared", "body": {"utc_offset": 1}}
    first = client.post("/run", headers=alice.headers, json=request)
    second = client.post("/actions", headers=alice.headers, json=request)
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json["action_id"] == second.json["action_id"]
    changed = client.post("/actions", headers=alice.headers, json={**request, "label": "x"})
    assert changed.status_code == 409


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"request_id": "r"}', b'{"request_id": "r", "body": {"utc_offset": 99}}'],
)
def test_post_actions_is_validated_like_run(client, alice, raw):
    response = client.post("/actions", headers=alice.headers, data=raw)
    assert response.status_code == 400 and response.json["code"] == "BadActionRequest"


def test_another_user_gets_404_on_the_new_paths(client, alice, bob):
    action_id = start(client, alice)
    for method, path in [
        ("get", f"/actions/{action_id}"),
        ("post", f"/actions/{action_id}/cancel"),
        ("delete", f"/actions/{action_id}"),
        ("get", f"/actions/{action_id}/log"),
        ("get", f"/{action_id}/log"),
    ]:
        response = getattr(client, method)(path, headers=bob.headers)
        assert response.status_code == 404 and response.json["code"] == "ActionNotFound", path


def test_extra_slashes_are_404_json_not_redirects(client, alice):
    """Werkzeug answered "/actions//ID" with an HTML 308 redirect to "/actions/ID"."""
    action_id = start(client, alice)
    for method, path in [
        ("GET", f"/actions//{action_id}"), ("GET", f"/{action_id}//status"),
        ("GET", f"/actions/{action_id}//log"), ("POST", f"/actions//{action_id}/cancel"),
        ("POST", f"/{action_id}//release"), ("DELETE", f"/actions//{action_id}"),
        ("POST", "/run/"), ("POST", "/actions/"), ("GET", "/actions/"),
        ("GET", f"/{action_id}/status/"), ("GET", f"/actions/{action_id}/"),
        ("GET", "/healthz/"),
    ]:
        response = client.open(path, method=method, headers=alice.headers)
        assert response.status_code == 404, (method, path, response.status_code)
        assert response.json["code"] == "NotFound", path
    assert client.get(f"/actions/{action_id}", headers=alice.headers).status_code == 200


def test_new_paths_need_a_token(client, alice):
    action_id = start(client, alice)
    for method, path in [
        ("get", "/actions"),
        ("post", "/actions"),
        ("get", f"/actions/{action_id}"),
        ("post", f"/actions/{action_id}/cancel"),
        ("delete", f"/actions/{action_id}"),
        ("get", f"/actions/{action_id}/log"),
        ("get", f"/{action_id}/log"),
    ]:
        response = getattr(client, method)(path)
        assert response.status_code == 401 and response.is_json, path


# --- enumeration -------------------------------------------------------------------
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


# --- log -----------------------------------------------------------------------------
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


def test_introspection_says_log_is_supported(client, alice):
    document = client.get("/", headers=alice.headers).json
    assert document["log_supported"] is True
    assert_conforms({**document, "visible_to": []}, "ProviderDescription")


# --- CORS ------------------------------------------------------------------------------
def test_cors_preflight_needs_no_token(client, globus):
    response = client.options(
        "/", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
    )
    assert response.status_code == 204 and response.data == b""
    assert response.headers["Access-Control-Allow-Methods"] == "GET, OPTIONS"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Expose-Headers"] == "*"
    assert globus.introspections == 0


def test_introspection_allows_any_origin(client, alice):
    response = client.get("/", headers=alice.headers)
    assert response.headers["Access-Control-Allow-Origin"] == "*"


# --- 405 ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("put", "/actions/some-id", {"GET", "DELETE"}),
        ("post", "/actions/some-id", {"GET", "DELETE"}),
        ("patch", "/actions", {"GET", "POST"}),
        ("get", "/actions/some-id/cancel", {"POST"}),
        ("delete", "/actions/some-id/log", {"GET"}),
        ("post", "/some-id/log", {"GET"}),
        ("post", "/", {"GET", "OPTIONS"}),
    ],
)
def test_wrong_method_on_new_paths_is_405_json(client, alice, method, path, allowed):
    response = getattr(client, method)(path, headers=alice.headers)
    assert response.status_code == 405 and response.json["code"] == "ActionMethodNotAllowed"
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}


# --- deadline ----------------------------------------------------------------------------
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


@pytest.mark.parametrize(
    "deadline",
    [
        lambda now: (now - timedelta(seconds=1)).isoformat(),
        lambda now: now.isoformat(),
        lambda now: (now + timedelta(days=30, seconds=1)).isoformat(),
        lambda now: (now + timedelta(hours=1)).replace(tzinfo=None).isoformat(),
    ],
    ids=["past", "now", "beyond-maximum-deadline", "no-offset"],
)
def test_bad_deadlines_are_400(client, alice, clock, deadline):
    response = client.post(
        "/run",
        headers=alice.headers,
        json={"request_id": "d", "body": {"utc_offset": 1}, "deadline": deadline(clock.now)},
    )
    assert response.status_code == 400 and response.json["code"] == "BadActionRequest"
    assert "deadline" in response.json["description"]


# --- what the fuzzer found (tests/test_fuzz_spec.py) ---------------------------------
def test_options_on_run_does_not_validate_without_a_token(client, globus):
    """OPTIONS is answered without a token; it used to run body validation
    and answer 400 with what it thought of the body."""
    response = client.options("/run", data=b'{"request_id": ""}')
    assert response.status_code == 200 and response.data == b""
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"POST", "OPTIONS"}
    assert globus.introspections == 0


@pytest.mark.parametrize("release_after", ["P72008815331.16172500243D", "PT99999999999999999999S"])
def test_huge_release_after_is_400_not_500(client, alice, release_after):
    response = client.post(
        "/actions",
        headers=alice.headers,
        json={"request_id": "r", "body": {"utc_offset": 1}, "release_after": release_after},
    )
    assert response.status_code == 400 and "release_after" in response.json["description"]


@pytest.mark.parametrize("field", ["request_id", "label"])
def test_lone_surrogates_are_400(client, alice, field):
    document = {"request_id": "r", "body": {"utc_offset": 1}, field: "\\ud912x"}
    raw = json.dumps(document).replace("\\\\ud912", "\\ud912").encode()
    response = client.post("/actions", headers=alice.headers, data=raw)
    assert response.status_code == 400 and "surrogate" in response.json["description"]
