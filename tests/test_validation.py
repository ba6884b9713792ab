"""Run requests that are refused: a JSON 400 naming what is wrong, never an
echo of the value, never a 500."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from globus_action_provider_tools.flask.exceptions import BadActionRequest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.validation import RequestBounds, RunRequestValidator
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


def test_label_is_64_characters_of_any_size(client, alice):
    """The spec's maxLength counts characters: 64 of 4 bytes (256 bytes) pass."""
    assert run(client, alice, label="\U0001f600" * 64).status_code == 202
    refused = run(client, alice, label="\U0001f600" * 65)
    assert refused.json == {
        "code": "BadActionRequest",
        "description": "Field '$.label' (category: 'maxLength'): is longer than 64 characters",
    }


def test_request_id_is_counted_in_characters(client, alice):
    assert run(client, alice, request_id="\U0001f600" * 256).status_code == 202
    refused = run(client, alice, request_id="é" * 257)
    assert refused.status_code == 400
    assert "'$.request_id' (category: 'maxLength'): is longer than 256 characters" in (
        refused.json["description"])


# --- per-request bounds (MAX_PRINCIPALS, MAX_TAGS, MAX_TAG_BYTES): 400, never 429 ----------
def urns(count: int, kind: str = "auth:identity") -> list[str]:
    return [f"urn:globus:{kind}:{uuid.UUID(int=i + 1)}" for i in range(count)]


@pytest.mark.parametrize("field", ["monitor_by", "manage_by"])
def test_principals_are_bounded(client, alice, field):
    assert run(client, alice, **{field: urns(64)}).status_code == 202
    refused = run(client, alice, **{field: urns(32) + urns(33, "groups:id")})
    assert refused.status_code == 400
    assert refused.json["description"] == (
        f"Field '$.{field}' (category: 'maxItems'): has more than 64 items")


@pytest.mark.parametrize("field", ["monitor_by", "manage_by"])
def test_principals_may_not_repeat(client, alice, field):
    """The spec's uniqueItems: a repeat would cost room and mean nothing."""
    refused = run(client, alice, **{field: [alice.urn, alice.urn]})
    assert refused.status_code == 400
    assert refused.json["description"] == (
        f"Field '$.{field}' (category: 'uniqueItems'): has duplicate items")


def test_max_principals_is_a_setting(make_app, alice):
    client = make_app(MAX_PRINCIPALS=2).test_client()
    assert run(client, alice, monitor_by=urns(2), manage_by=urns(2)).status_code == 202
    refused = run(client, alice, manage_by=urns(3))
    assert refused.json["description"].endswith("has more than 2 items")


def test_tags_are_bounded_in_number(client, alice):
    assert run(client, alice, tags=["t"] * 32).status_code == 202
    refused = run(client, alice, tags=["t"] * 33)
    assert refused.status_code == 400
    assert refused.json["description"] == (
        "Field '$.tags' (category: 'maxItems'): has more than 32 items")


@pytest.mark.parametrize(
    ("tag", "accepted"),
    [("x" * 256, True), ("x" * 257, False), ("é" * 128, True), ("é" * 129, False),
     ("\U0001f600" * 64, True), ("\U0001f600" * 65, False), ("", True)],
    ids=["256 ascii", "257 ascii", "128 two-byte", "129 two-byte", "64 four-byte",
         "65 four-byte", "empty"],
)
def test_tags_are_bounded_in_utf8_bytes(client, alice, tag, accepted):
    response = run(client, alice, tags=["ok", tag])
    if accepted:
        assert response.status_code == 202
    else:
        assert response.status_code == 400
        assert response.json["description"] == (
            "Field '$.tags[1]' (category: 'maxLength'): is longer than 256 bytes (UTF-8)")


def test_tag_bounds_are_settings(make_app, alice):
    client = make_app(MAX_TAGS=1, MAX_TAG_BYTES=2).test_client()
    assert run(client, alice, tags=["é"]).status_code == 202
    assert "more than 1 items" in run(client, alice, tags=["a", "b"]).json["description"]
    assert "longer than 2 bytes" in run(client, alice, tags=["aé"]).json["description"]
    assert run(client, alice, tags=[]).status_code == 202
    assert make_app(MAX_TAGS=0).test_client().post(
        "/run", headers=alice.headers,
        json={"request_id": "r", "body": {"utc_offset": 1}, "tags": ["a"]},
    ).status_code == 400


def test_bounds_are_400_even_over_the_rates(make_app, alice):
    """Such a request can never succeed: it is refused for what it is."""
    client = make_app(RUN_RATE_LIMIT="1/minute").test_client()
    assert run(client, alice).status_code == 202
    assert run(client, alice).status_code == 429
    assert run(client, alice, tags=["t"] * 33).status_code == 400


BOUNDS = RequestBounds(max_request_id_length=8, max_principals=3, max_tags=2, max_tag_bytes=4)
BOUNDED = (RunRequestValidator(BOUNDS), RunRequestValidator(BOUNDS, compiled=False))
DETAILS = {
    "$.manage_by": "(category: 'maxItems'): has more than 3 items",
    "$.monitor_by": "(category: 'maxItems'): has more than 3 items",
    "$.request_id": "(category: 'maxLength'): is longer than 8 characters",
    "$.tags": "(category: 'maxItems'): has more than 2 items",
}


@settings(max_examples=300, deadline=None)
@given(
    monitor_by=st.lists(st.sampled_from(urns(6)), unique=True, max_size=5),
    manage_by=st.lists(st.sampled_from(urns(6, "groups:id")), unique=True, max_size=5),
    tags=st.lists(st.text(st.characters(blacklist_categories=("Cs",)), max_size=6), max_size=4),
    request_id=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=10),
)
def test_bounds_hold_for_any_request(monitor_by, manage_by, tags, request_id):
    """Accepted exactly when every bound holds; else a 400 naming first the
    field over its bound that comes first, and the bound. The same with and without the
    compiled front."""
    document = {"request_id": request_id, "body": {"utc_offset": 1},
                "monitor_by": monitor_by, "manage_by": manage_by, "tags": tags}
    over = [  # in the order of their paths, as the description lists them
        field for field, is_over in [
            ("$.manage_by", len(manage_by) > 3),
            ("$.monitor_by", len(monitor_by) > 3),
            ("$.request_id", len(request_id) > 8),
            ("$.tags", len(tags) > 2),
        ] if is_over
    ]
    too_long = [i for i, tag in enumerate(tags) if len(tag.encode()) > 4]
    for validator in BOUNDED:
        if not over and not too_long:
            accepted = validator.validate(document)
            assert (accepted.request_id, accepted.monitor_by) == (request_id, set(monitor_by))
            continue
        with pytest.raises(BadActionRequest) as refused:
            validator.validate(document)
        description = refused.value.description
        if over:
            assert description.split("; ")[0] == f"Field '{over[0]}' {DETAILS[over[0]]}"
        else:
            assert description == (f"Field '$.tags[{too_long[0]}]' (category: 'maxLength'): "
                                   "is longer than 4 bytes (UTF-8)")


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
