"""Responses are written by orjson (app.jsonprovider): the same JSON documents
as the library's provider, whatever the value."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from globus_action_provider_tools.flask.helpers import JsonProvider

from tests.helpers import run


@pytest.mark.parametrize(
    "document",
    [
        {"b": 1, "a": [1, 2.5], "nested": {"z": None, "y": True}},
        {"when": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), "how_long": timedelta(days=30),
         "who": frozenset({"x"})},  # the library's types: its convert_to_json
        {"label": "caf\u00e9 \U0001f600"},
        {"big": 2**70},  # past 64 bits: orjson refuses it, the stdlib writes it
    ],
    ids=["plain", "library-types", "non-ascii", "big-int"],
)
def test_documents_are_the_library_providers(app, document):
    written = app.json.response(document)
    assert written.mimetype == "application/json"
    assert json.loads(written.get_data()) == json.loads(JsonProvider(app).dumps(document))
    assert list(json.loads(written.get_data())) == sorted(document)


def test_text_comes_back_as_sent(client, alice):
    label = "caf\u00e9 \U0001f600"
    started = run(client, alice, label=label)
    assert started.status_code == 202 and started.json["label"] == label
    status = client.get(f"/{started.json['action_id']}/status", headers=alice.headers)
    assert status.json["label"] == label
