"""The memory store's own parts (the contract it shares with the SQL stores:
test_store_contract.py): its capacity (StoreFull, and 503 through the app),
and its index by principal, which must answer enumerate exactly as a scan of
every action would (a property test) and forget what it forgets."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import ROOM_RETRY_AFTER_SECONDS
from app.settings import load_settings
from app.store import MemoryStore, StoreFull, open_store
from app.store.base import ROLES, STATUSES
from app.store.memory import DEFAULT_CAPACITY
from app.testing import User
from tests.helpers import run
from tests.test_store_contract import HOUR, MINUTE, T0, expected, make_record


# --- capacity -------------------------------------------------------------------------------
def test_a_full_store_refuses_new_actions_and_keeps_every_one() -> None:
    store = MemoryStore(capacity=3)
    records = [make_record(n) for n in range(3)]
    for record in records:
        store.create(record, T0)
    with pytest.raises(StoreFull) as caught:
        store.create(make_record(10), T0)
    assert caught.value.capacity == 3
    assert [store.get(r.action_id) for r in records] == records
    assert store.create(make_record(20, request_id="request-1"), T0) == (records[1], False)
    store.release(records[0].action_id)
    assert store.create(make_record(10), T0)[1]


def test_a_full_store_forgets_what_is_due_to_make_room() -> None:
    store = MemoryStore(capacity=2)
    due = make_record(0, release_after=timedelta(0))
    store.create(due, T0)
    store.create(make_record(1), T0)
    with pytest.raises(StoreFull):
        store.create(make_record(10), due.release_at - timedelta(microseconds=1))
    assert store.create(make_record(10), due.release_at)[1]
    assert store.get(due.action_id) is None


def test_the_capacity_comes_from_the_setting() -> None:
    assert load_settings()["MEMORY_STORE_CAPACITY"] == DEFAULT_CAPACITY == 50_000
    assert open_store("memory://").capacity == DEFAULT_CAPACITY  # type: ignore[attr-defined]
    assert open_store("memory://", {"MEMORY_STORE_CAPACITY": 7}).capacity == 7  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="capacity"):
        MemoryStore(capacity=0)


def test_a_full_provider_answers_503_and_every_acknowledged_action(
    make_app: Any, alice: User
) -> None:
    client = make_app(MEMORY_STORE_CAPACITY=3).test_client()
    started = [run(client, alice, request_id=f"r{n}") for n in range(3)]
    assert [r.status_code for r in started] == [202] * 3
    full = run(client, alice)
    assert full.status_code == 503
    assert full.json == {
        "code": "ProviderFull",
        "description": "The provider is full: it keeps no more actions until some are "
        f"released; try again in {ROOM_RETRY_AFTER_SECONDS} s.",
    }
    assert full.headers["Retry-After"] == str(ROOM_RETRY_AFTER_SECONDS)
    repeat = run(client, alice, request_id="r1")
    assert repeat.status_code == 200 and repeat.json["action_id"] == started[1].json["action_id"]
    for response in started:
        action_id = response.json["action_id"]
        assert client.get(f"/{action_id}/status", headers=alice.headers).status_code == 200


# --- the index by principal -------------------------------------------------------------
PRINCIPALS = ["alice", "bob", "carol", "group:g", "group:h"]
principal_lists = st.lists(st.sampled_from(PRINCIPALS), max_size=3, unique=True)
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("create"), st.sampled_from(PRINCIPALS[:3]), principal_lists, principal_lists,
            st.integers(0, 120), st.integers(1, 120), st.integers(0, 120), st.booleans(),
        ),
        st.tuples(st.just("cancel"), st.integers(0, 40), st.integers(0, 200)),
        st.tuples(st.just("release"), st.integers(0, 40)),
        st.tuples(st.just("sweep"), st.integers(0, 300)),
    ),
    max_size=40,
)
queries = st.lists(
    st.tuples(
        st.frozensets(st.sampled_from([*PRINCIPALS, "nobody"]), max_size=3),
        st.frozensets(st.sampled_from(ROLES)),
        st.frozensets(st.sampled_from(STATUSES)),
        st.integers(0, 300), st.integers(0, 6),
    ),
    min_size=1, max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(operations, queries)
def test_enumerate_answers_as_a_scan_of_every_action(ops: list[Any], asked: list[Any]) -> None:
    store = MemoryStore()
    kept: dict[str, Any] = {}  # the test's own model: action_id -> record
    ids: list[str] = []
    for n, (op, *args) in enumerate(ops):
        if op == "create":
            creator, monitors, managers, start, runs, release_after, succeeds = args
            record = make_record(
                n, creator=creator, monitor_by=tuple(monitors), manage_by=tuple(managers),
                start=T0 + timedelta(seconds=start), runs=timedelta(seconds=runs),
                release_after=timedelta(seconds=release_after),
                result="2026-01-02T03:04:05+00:00" if succeeds else None,
            )
            stored, created = store.create(record, T0)
            assert created and stored == record
            kept[record.action_id] = record
            ids.append(record.action_id)
        elif op == "cancel" and ids:
            action_id = ids[args[0] % len(ids)]
            cancelled = store.cancel(action_id, T0 + timedelta(seconds=args[1]))
            if cancelled is not None:
                kept[action_id] = cancelled
        elif op == "release" and ids:
            action_id = ids[args[0] % len(ids)]
            assert store.release(action_id) == (kept.pop(action_id, None) is not None)
        elif op == "sweep":
            now = T0 + timedelta(seconds=args[0])
            due = [a for a, r in kept.items() if r.release_at <= now]
            assert store.sweep(now, 1_000) == len(due)
            for action_id in due:
                del kept[action_id]
    for principals, roles, statuses, at, limit in asked:
        now = T0 + timedelta(seconds=at)
        args = (principals, roles, statuses, now)
        got = [r.action_id for r in store.enumerate(*args, limit=limit)]
        assert got == expected(list(kept.values()), *args)[:limit]
    for action_id in list(kept):
        store.release(action_id)
    assert len(store) == 0
    assert not store._by_principal and not store._by_creator and not store._requests


def test_enumerate_pages_through_many_actions_of_one_principal() -> None:
    store = MemoryStore()
    records = [make_record(n, start=T0 + timedelta(seconds=n % 7), runs=HOUR) for n in range(50)]
    for record in records:
        store.create(record, T0)
    statuses = frozenset({"ACTIVE"})
    args = (frozenset({"alice"}), frozenset({"creator_id"}), statuses, T0 + MINUTE)
    seen, after = [], None
    while page := store.enumerate(*args, limit=8, after=after):
        seen += [r.action_id for r in page]
        after = (page[-1].start_time, page[-1].action_id)
    assert seen == expected(records, *args)
    assert len(seen) == 50
