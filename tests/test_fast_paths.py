"""The speed-ups keep their promises: orjson responses are the library
provider's documents, and the memory store's sharing of principals changes no
record."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from globus_action_provider_tools.flask.helpers import JsonProvider

from app.jsonprovider import FastJSONProvider
from app.store import ActionRecord, MemoryStore

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


def record(action_id: str, creator: str, principals: tuple[str, ...]) -> ActionRecord:
    return ActionRecord(
        action_id=action_id,
        creator_id=creator,
        request_id=f"req-{action_id}",
        fingerprint=b"f" * 16,
        start_time=NOW,
        estimated_completion_time=NOW + timedelta(hours=1),
        release_after=timedelta(days=30),
        result="r",
        monitor_by=principals,
        manage_by=principals,
    )


def test_the_memory_store_shares_principals_and_changes_no_record():
    store = MemoryStore()
    # Equal but distinct objects, as each request builds them.
    first = record("a1", "".join(["urn:x:", "alice"]), ("".join(["urn:x:", "alice"]),))
    second = record("a2", "".join(["urn:x:", "alice"]), ("".join(["urn:x:", "alice"]),))
    assert first.creator_id is not second.creator_id
    stored_first, created = store.create(first, NOW)
    assert created and stored_first == first
    stored_second, _ = store.create(second, NOW)
    assert stored_second == second
    assert stored_second.creator_id is stored_first.creator_id
    assert stored_second.monitor_by is stored_first.monitor_by
    assert stored_second.monitor_by[0] is stored_first.creator_id
    assert store.get("a2") == second
    assert dataclasses.asdict(store.get("a1")) == dataclasses.asdict(first)
