"""Responses are written by the library's JSON provider: its types as JSON,
and text sent in comes back as the same text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.helpers import run


def test_the_librarys_types_are_written_as_json(app):
    written = app.json.response(
        {"when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "how_long": timedelta(days=30)}
    )
    assert written.mimetype == "application/json"
    assert written.get_data() == b'{"how_long":"P30D","when":"2026-01-02T03:04:05+00:00"}\n'


def test_text_comes_back_as_sent(client, alice):
    label = "caf\u00e9 \U0001f600"
    started = run(client, alice, label=label)
    assert started.status_code == 202 and started.json["label"] == label
    status = client.get(f"/{started.json['action_id']}/status", headers=alice.headers)
    assert status.json["label"] == label
