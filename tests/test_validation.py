"""Run requests that are refused: a JSON 400 naming what is wrong, never an
echo of the value, never a 500."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.helpers import run


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
    "offset",
    [0, -0.0, 1, 1.0, -12, 14, 14.0, 5.5, -3.75, "5", "5.5", "-0", "14.0", "-12.0",
     "+14:00", "-12:00", "+05:30", "5:30"],
    ids=repr,
)
def test_utc_offsets_accepted(client, alice, offset):
    assert run(client, alice, body={"utc_offset": offset}).status_code == 202


@pytest.mark.parametrize(
    "offset",
    [False, None, [], {}, 14.0000001, -12.0000001, -12.5, 15, -1e300, 2**70, "5\n", "\n5",
     " 5", "5\t", "+14:01", "-12:01", "14.", "14.1", "05:60", "+-5", "0x5", "", "+", "-",
     "\u0665", "1_0", "+05:30\n"],
    ids=repr,
)
def test_utc_offsets_refused(client, alice, offset):
    response = run(client, alice, body={"utc_offset": offset})
    assert response.status_code == 400 and "$.body.utc_offset" in response.json["description"]


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
        b"\xef\xbb\xbf{}",  # a BOM
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


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"request_id": "r"}', b'{"request_id": "r", "body": {"utc_offset": 99}}'],
)
def test_post_actions_is_validated_like_run(client, alice, raw):
    response = client.post("/actions", headers=alice.headers, data=raw)
    assert response.status_code == 400 and response.json["code"] == "BadActionRequest"


def test_request_id_length_is_limited(client, alice):
    assert run(client, alice, request_id="x" * 256).status_code == 202
    assert run(client, alice, request_id="x" * 257).status_code == 400


def test_label_longer_than_64_is_400(client, alice):
    assert run(client, alice, label="x" * 64).status_code == 202
    assert run(client, alice, label="x" * 65).status_code == 400


def test_label_must_be_1_to_64_characters(client, alice):
    assert run(client, alice, label="").status_code == 400
    assert run(client, alice, label="x").status_code == 202


def test_validation_errors_do_not_echo_values(client, alice):
    secret = "s3cr3t-value-that-must-not-come-back"
    response = run(client, alice, body={"utc_offset": secret})
    assert response.status_code == 400
    assert secret not in response.get_data(as_text=True)


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
