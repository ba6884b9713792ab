"""The speed-ups keep their promises: orjson responses are the library
provider's documents, and sharing principals between records changes no
record."""

from __future__ import annotations

from datetime import UTC, datetime

from app.actions import Interner

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


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
