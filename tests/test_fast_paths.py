"""The speed-ups keep their promises: orjson responses are the library
provider's documents, and sharing principals between records changes no
record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from globus_action_provider_tools.flask.helpers import JsonProvider

from app.actions import Interner
from app.jsonprovider import FastJSONProvider

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


@pytest.mark.parametrize(
    "document",
    [
        {"b": 1, "a": [1, 2], "nested": {"z": None, "y": True}},
        {"when": NOW, "how_long": timedelta(days=30), "who": frozenset({"x"})},
        {"label": "caf\u00e9 \U0001f600"},  # non-ASCII: the library's provider writes it
        {10: "int keys", 2: "sort as numbers"},
        [1, "two", None],
        {"big": 2**70},
    ],
    ids=["plain", "library-types", "non-ascii", "int-keys", "list", "big-int"],
)
def test_responses_are_the_library_providers_documents(app, document):
    library = JsonProvider(app)
    fast = FastJSONProvider(app)
    expected = library.response(document)
    response = fast.response(document)
    assert response.get_data() == expected.get_data()
    assert response.mimetype == expected.mimetype == "application/json"


def test_a_status_response_is_byte_identical(client, alice, app):
    response = client.post(
        "/run", json={"request_id": "r", "body": {"utc_offset": 5.5}, "label": "L"},
        headers=alice.headers,
    )
    assert response.status_code == 202
    with app.app_context():
        expected = JsonProvider(app).response(response.json).get_data()
    assert response.get_data() == expected


def test_a_callers_actions_share_their_principals(app, client, alice):
    ids = [
        client.post("/run", json={"request_id": f"r{i}", "body": {"utc_offset": 1}},
                    headers=alice.headers).json["action_id"]
        for i in range(2)
    ]
    store = app.extensions["store"]
    first, second = (store.get(i) for i in ids)
    assert first.creator_id == second.creator_id == alice.urn
    assert second.creator_id is first.creator_id
    assert second.monitor_by is first.monitor_by is first.manage_by
    assert first.creator_id in first.monitor_by
    assert [s["creator_id"] for s in (client.get(f"/{i}/status", headers=alice.headers).json
                                      for i in ids)] == [alice.urn] * 2


def test_the_interner_keeps_values_and_forgets_past_its_limit():
    intern = Interner(limit=2)
    a1, a2 = "".join(["urn:", "a"]), "".join(["urn:", "a"])
    assert a1 is not a2
    assert intern(a1) is a1 and intern(a2) is a1
    assert intern.principals((a2,)) == (a1,) and intern.principals((a2,))[0] is a1
    intern("b")  # past the limit: starts afresh
    assert intern(a2) is a2
