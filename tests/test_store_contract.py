"""One contract for every ActionStore: memory, SQLite and PostgreSQL.

The same cases run against each backend (the ``store_url`` and ``sql_url``
fixtures of conftest.py); SQL stores also race across processes and survive
close/reopen. The kill -9 of a serving server is in test_workers_e2e.py.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from app.store import ActionStore, UnknownStoreURL, open_store
from app.store.base import (
    ROLES,
    ActionRecord,
    LiveActionLimitReached,
    effective_status,
    holds_role,
)
from app.store.sql import SCHEMA_VERSION, SchemaTooNew
from tests.store_fixtures import execute_directly

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def make_record(
    n: int,
    *,
    creator: str = "alice",
    request_id: str | None = None,
    start: datetime = T0,
    runs: timedelta = MINUTE,
    release_after: timedelta = HOUR,
    result: str | None = "2026-01-02T08:34:05+05:30",
    monitor_by: tuple[str, ...] = (),
    manage_by: tuple[str, ...] = (),
    label: str | None = None,
    action_id: str | None = None,
) -> ActionRecord:
    return ActionRecord(
        action_id=action_id or f"00000000-0000-4000-8000-{n:012d}",
        creator_id=creator,
        request_id=request_id if request_id is not None else f"request-{n}",
        fingerprint=bytes([n % 256]) * 16,
        start_time=start,
        estimated_completion_time=start + runs,
        release_after=release_after,
        result=result,
        monitor_by=monitor_by,
        manage_by=manage_by,
        label=label,
    )


@pytest.fixture
def store(store_url: str) -> Iterator[ActionStore]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def assert_utc(record: ActionRecord) -> None:
    for value in (record.start_time, record.estimated_completion_time, record.cancelled_at):
        if value is not None:
            assert value.utcoffset() == timedelta(0)


# --- create, dedup, get -------------------------------------------------------
def test_create_then_get_round_trips_every_field(store: ActionStore) -> None:
    record = make_record(1, monitor_by=("urn:m1", "urn:m2"), manage_by=("urn:g",), label="a label")
    stored, created = store.create(record, T0)
    assert created and stored == record
    fetched = store.get(record.action_id)
    assert fetched == record
    assert fetched is not None and fetched.release_at == T0 + MINUTE + HOUR
    assert_utc(fetched)
    failed = make_record(2, result=None, label=None)
    store.create(failed, T0)
    assert store.get(failed.action_id) == failed


def test_times_in_other_offsets_are_kept_exactly(store: ActionStore) -> None:
    tz = timezone(timedelta(hours=5, minutes=30))
    record = make_record(1, start=T0.astimezone(tz))
    store.create(record, T0)
    fetched = store.get(record.action_id)
    assert fetched is not None
    assert fetched.start_time == T0 and fetched.start_time.microsecond == T0.microsecond


def test_get_unknown_and_request_id_are_not_action_ids(store: ActionStore) -> None:
    record = make_record(1, request_id="looks-like-an-id")
    store.create(record, T0)
    assert store.get("no-such-action") is None
    assert store.get("looks-like-an-id") is None


def test_ids_with_a_nul_are_unknown_not_errors(store: ActionStore) -> None:
    """PostgreSQL refuses NUL in text; a URL can carry one (%00)."""
    record = make_record(1)
    store.create(record, T0)
    for action_id in ("\x00", record.action_id + "\x00"):
        assert store.get(action_id) is None
        assert store.cancel(action_id, T0) is None
        assert store.release(action_id) is False
    assert store.get(record.action_id) == record


def test_request_id_dedup_is_per_creator(store: ActionStore) -> None:
    first = make_record(1, request_id="same")
    assert store.create(first, T0) == (first, True)
    again, created = store.create(make_record(2, request_id="same"), T0 + MINUTE)
    assert not created and again == first
    assert store.get(make_record(2).action_id) is None
    other, created = store.create(make_record(3, request_id="same", creator="bob"), T0)
    assert created and other.action_id != first.action_id


def test_expired_holder_of_a_request_id_counts_as_gone(store: ActionStore) -> None:
    old = make_record(1, request_id="reused", release_after=timedelta(0))
    store.create(old, T0)
    at_release = old.release_at
    # Still live just before its release time: dedup returns it.
    just_before = at_release - timedelta(microseconds=1)
    assert store.create(make_record(2, request_id="reused"), just_before) == (old, False)
    new = make_record(3, request_id="reused", start=at_release)
    assert store.create(new, at_release) == (new, True)
    assert store.get(old.action_id) is None
    assert store.get(new.action_id) == new


def test_find_request_finds_the_creators_live_action_only(store: ActionStore) -> None:
    record = make_record(1, request_id="asked", release_after=timedelta(0))
    store.create(record, T0)
    assert store.find_request("alice", "asked", T0) == record
    assert store.find_request("bob", "asked", T0) is None  # per creator
    assert store.find_request("alice", "other", T0) is None
    assert store.find_request("alice", "ask\x00ed", T0) is None  # NUL: unknown, not an error
    assert store.find_request("alice", "asked", record.release_at) is None  # expired: gone
    store.release(record.action_id)
    assert store.find_request("alice", "asked", T0) is None


# --- cancel -------------------------------------------------------------------
def test_cancel_is_a_compare_and_set(store: ActionStore) -> None:
    record = make_record(1, runs=HOUR, release_after=timedelta(days=30))
    store.create(record, T0)
    at = T0 + MINUTE
    cancelled = store.cancel(record.action_id, at)
    assert cancelled is not None and cancelled.cancelled_at == at
    assert cancelled.release_at == at + timedelta(days=30)
    assert store.get(record.action_id) == cancelled
    assert effective_status(cancelled, at) == "FAILED"
    assert store.cancel(record.action_id, at + MINUTE) is None  # already cancelled
    assert store.get(record.action_id) == cancelled
    assert store.cancel("no-such-action", at) is None


def test_cancel_after_completion_loses(store: ActionStore) -> None:
    record = make_record(1, runs=MINUTE)
    store.create(record, T0)
    assert store.cancel(record.action_id, record.estimated_completion_time) is None
    assert store.get(record.action_id) == record


def test_cancel_moves_the_release_time_for_sweep(store: ActionStore) -> None:
    record = make_record(1, runs=timedelta(days=10), release_after=MINUTE)
    store.create(record, T0)
    store.cancel(record.action_id, T0)
    assert store.sweep(T0 + MINUTE - timedelta(microseconds=1), 10) == 0
    assert store.sweep(T0 + MINUTE, 10) == 1
    assert store.get(record.action_id) is None


# --- release and sweep ------------------------------------------------------------
def test_release_forgets_the_action_and_its_request_id(store: ActionStore) -> None:
    record = make_record(1, request_id="again")
    store.create(record, T0)
    assert store.release(record.action_id) is True
    assert store.release(record.action_id) is False
    assert store.get(record.action_id) is None
    assert store.cancel(record.action_id, T0) is None
    fresh = make_record(2, request_id="again")
    assert store.create(fresh, T0 + MINUTE) == (fresh, True)
    assert store.release("no-such-action") is False


def test_sweep_is_bounded_and_only_takes_what_is_due(store: ActionStore) -> None:
    due = [make_record(n, release_after=timedelta(seconds=n)) for n in range(5)]
    later = make_record(9, release_after=timedelta(days=1))
    for record in [*due, later]:
        store.create(record, T0)
    now = T0 + MINUTE + timedelta(seconds=10)
    assert store.sweep(now, 2) == 2
    assert store.sweep(now, 2) == 2
    assert store.sweep(now, 2) == 1
    assert store.sweep(now, 2) == 0
    assert all(store.get(r.action_id) is None for r in due)
    assert store.get(later.action_id) == later
    assert len(store) == 1  # type: ignore[arg-type]
    # Their request_ids are free again.
    assert store.create(make_record(20, request_id="request-0"), now)[1] is True


def test_released_storage_is_reclaimed(store: ActionStore) -> None:
    for n in range(50):
        store.create(make_record(n, release_after=timedelta(0)), T0)
    end = T0 + MINUTE
    while store.sweep(end, 16):
        pass
    assert len(store) == 0  # type: ignore[arg-type]


# --- enumerate ----------------------------------------------------------------------
def enumeration_fixture() -> list[ActionRecord]:
    same_start = T0 + timedelta(seconds=30)
    return [
        make_record(1, creator="alice", runs=HOUR),  # ACTIVE
        make_record(2, creator="alice", start=T0 + timedelta(seconds=1)),  # SUCCEEDED later
        make_record(3, creator="alice", result=None, start=same_start),  # FAILED later
        make_record(4, creator="bob", monitor_by=("alice", "carol"), start=same_start),
        make_record(5, creator="bob", manage_by=("alice",), runs=HOUR, start=same_start),
        make_record(6, creator="bob", monitor_by=("group:g",), start=T0 + timedelta(seconds=40)),
        make_record(7, creator="carol", manage_by=("group:g", "alice"), runs=HOUR),
        make_record(8, creator="alice", release_after=timedelta(0), runs=timedelta(0)),  # gone
        make_record(9, creator="alice", monitor_by=("alice",), manage_by=("alice",), runs=HOUR),
    ]


def expected(
    records: list[ActionRecord],
    principals: frozenset[str],
    roles: frozenset[str],
    statuses: frozenset[str],
    now: datetime,
) -> list[str]:
    found = [
        r
        for r in records
        if r.release_at > now
        and effective_status(r, now) in statuses
        and any(holds_role(r, principals, role) for role in roles)
    ]
    return [r.action_id for r in sorted(found, key=lambda r: (r.start_time, r.action_id))]


QUERIES = [
    ({"alice"}, {"creator_id"}, {"ACTIVE", "SUCCEEDED", "FAILED"}),
    ({"alice"}, set(ROLES), {"ACTIVE", "SUCCEEDED", "FAILED", "INACTIVE"}),
    ({"alice"}, {"monitor_by"}, {"SUCCEEDED", "FAILED"}),
    ({"alice", "group:g"}, {"manage_by", "monitor_by"}, {"ACTIVE"}),
    ({"alice"}, set(ROLES), {"FAILED"}),
    ({"carol"}, {"creator_id", "monitor_by"}, {"SUCCEEDED"}),
    ({"nobody"}, set(ROLES), {"ACTIVE"}),
    ({"alice"}, set(ROLES), {"INACTIVE"}),
    ({"alice"}, set(), {"ACTIVE"}),
]


def test_enumerate_filters_by_principal_role_and_status(store: ActionStore) -> None:
    records = enumeration_fixture()
    for record in records:
        store.create(record, T0)
    store.cancel(make_record(9).action_id, T0 + timedelta(seconds=5))
    records[-1] = store.get(make_record(9).action_id)  # type: ignore[call-overload]
    now = T0 + 2 * MINUTE
    seen_any = False
    for principals, roles, statuses in QUERIES:
        args = (frozenset(principals), frozenset(roles), frozenset(statuses), now)
        got = [r.action_id for r in store.enumerate(*args, limit=100)]
        assert got == expected(records, *args), (principals, roles, statuses)
        seen_any = seen_any or bool(got)
    assert seen_any


def test_enumerate_pages_by_start_time_then_action_id(store: ActionStore) -> None:
    records = enumeration_fixture()
    for record in records:
        store.create(record, T0)
    now = T0 + 2 * MINUTE
    statuses = frozenset({"ACTIVE", "SUCCEEDED", "FAILED"})
    args = (frozenset({"alice", "group:g"}), frozenset(ROLES), statuses, now)
    everything = expected(records, *args)
    assert len(everything) >= 6
    pages: list[list[str]] = []
    after = None
    while True:
        page = store.enumerate(*args, limit=2, after=after)
        if not page:
            break
        assert len(page) <= 2
        pages.append([r.action_id for r in page])
        after = (page[-1].start_time, page[-1].action_id)
    assert [a for page in pages for a in page] == everything
    assert len(pages) == (len(everything) + 1) // 2


# --- the live-action limit ----------------------------------------------------------------
LIMIT = 3


def fill_to_limit(store: ActionStore, creator: str = "alice", **fields: Any) -> list[ActionRecord]:
    records = [make_record(n, creator=creator, **fields) for n in range(LIMIT)]
    for record in records:
        assert store.create(record, T0, LIMIT)[1]
    return records


def refused(store: ActionStore, record: ActionRecord, now: datetime = T0) -> bool:
    try:
        store.create(record, now, LIMIT)
    except LiveActionLimitReached as error:
        assert error.limit == LIMIT
        return True
    return False


def test_at_the_limit_a_new_action_is_refused_and_nothing_stored(store: ActionStore) -> None:
    fill_to_limit(store)
    assert refused(store, make_record(10))
    assert store.get(make_record(10).action_id) is None
    assert store.find_request("alice", "request-10", T0) is None
    assert len(store) == LIMIT  # type: ignore[arg-type]
    # Per creator: bob has room; without a limit alice has too.
    assert store.create(make_record(11, creator="bob"), T0, LIMIT)[1]
    assert store.create(make_record(12), T0)[1]


def test_at_the_limit_a_repeat_is_answered_with_its_action(store: ActionStore) -> None:
    records = fill_to_limit(store)
    again = make_record(20, request_id=records[1].request_id)
    assert store.create(again, T0 + MINUTE, LIMIT) == (records[1], False)


def test_release_makes_room_at_once(store: ActionStore) -> None:
    records = fill_to_limit(store)
    assert refused(store, make_record(10))
    assert store.release(records[0].action_id)
    assert store.create(make_record(10), T0, LIMIT) == (make_record(10), True)
    assert refused(store, make_record(11))


def test_expired_actions_do_not_count_before_they_are_swept(store: ActionStore) -> None:
    short = make_record(0, release_after=timedelta(0))  # released when it completes
    store.create(short, T0, LIMIT)
    store.create(make_record(1), T0, LIMIT)
    store.create(make_record(2, runs=HOUR), T0, LIMIT)
    assert refused(store, make_record(10), short.release_at - timedelta(microseconds=1))
    assert store.create(make_record(10), short.release_at, LIMIT)[1]  # not swept, not counted
    assert refused(store, make_record(11), short.release_at)


def test_cancelled_and_completed_actions_count_until_released(store: ActionStore) -> None:
    records = fill_to_limit(store, runs=HOUR)  # each kept until T0 + 2 h
    assert store.cancel(records[0].action_id, T0 + MINUTE) is not None  # kept until T0 + 61 min
    assert refused(store, make_record(10), T0 + 2 * MINUTE)
    every_one_completed = T0 + HOUR + MINUTE - timedelta(microseconds=1)
    assert refused(store, make_record(10), every_one_completed)
    assert store.create(make_record(10), T0 + HOUR + MINUTE, LIMIT)[1]


# --- concurrency: threads -------------------------------------------------------------
def race(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run work(0..n-1) in n threads released together."""
    barrier = threading.Barrier(n)

    def start(i: int) -> Any:
        barrier.wait(timeout=30)
        return work(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(start, range(n)))


THREADS = 12


def test_threads_racing_on_one_request_id_start_one_action(store: ActionStore) -> None:
    results = race(THREADS, lambda i: store.create(make_record(100 + i, request_id="one"), T0))
    winners = [stored for stored, created in results if created]
    assert len(winners) == 1
    assert {stored.action_id for stored, _ in results} == {winners[0].action_id}
    assert len(store) == 1  # type: ignore[arg-type]


def test_threads_racing_to_cancel_have_one_winner(store: ActionStore) -> None:
    record = make_record(1, runs=HOUR)
    store.create(record, T0)
    results = race(THREADS, lambda i: store.cancel(record.action_id, T0 + timedelta(seconds=i)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert store.get(record.action_id) == winners[0]


def test_cancel_racing_completion_has_one_winner_before_completion(store: ActionStore) -> None:
    record = make_record(1, runs=MINUTE)
    store.create(record, T0)
    ect = record.estimated_completion_time
    # Half the callers arrive just before completion, half just after.
    moments = [ect + timedelta(microseconds=(-1 if i % 2 else 0) * (i + 1)) for i in range(THREADS)]
    results = race(THREADS, lambda i: store.cancel(record.action_id, moments[i]))
    winners = [(i, r) for i, r in enumerate(results) if r is not None]
    assert len(winners) == 1
    index, winner = winners[0]
    assert moments[index] < ect and winner.cancelled_at == moments[index]
    assert store.get(record.action_id) == winner


def test_threads_racing_to_release_have_one_winner(store: ActionStore) -> None:
    record = make_record(1)
    store.create(record, T0)
    results = race(THREADS, lambda i: store.release(record.action_id))
    assert results.count(True) == 1
    assert store.get(record.action_id) is None


def test_threads_of_one_creator_at_the_limit_start_one_action(store: ActionStore) -> None:
    for n in range(LIMIT - 1):
        store.create(make_record(n), T0, LIMIT)
    started = race(THREADS, lambda i: not refused(store, make_record(100 + i)))
    assert sum(started) == 1
    assert len(store) == LIMIT  # type: ignore[arg-type]


# --- concurrency: processes (SQL) ------------------------------------------------------
PROCESSES = 4


def _in_process(url: str, barrier: Any, queue: Any, operation: str, index: int) -> None:
    try:
        store = open_store(url)
        try:
            barrier.wait(timeout=60)
            if operation == "create":
                stored, created = store.create(make_record(200 + index, request_id="shared"), T0)
                queue.put((index, stored.action_id, created))
            elif operation == "create_limited":
                queue.put((index, None, not refused(store, make_record(200 + index))))
            else:
                cancelled = store.cancel(make_record(1).action_id, T0 + timedelta(seconds=index))
                queue.put((index, None if cancelled is None else cancelled.cancelled_at, None))
        finally:
            store.close()
    except BaseException as error:  # report it to the test instead of dying silently
        queue.put((index, "error", repr(error)))


def race_processes(url: str, operation: str) -> list[tuple[int, Any, Any]]:
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(PROCESSES)
    queue = context.Queue()
    processes = [
        context.Process(target=_in_process, args=(url, barrier, queue, operation, i))
        for i in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    results = [queue.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert not [r for r in results if r[1] == "error"], results
    return results


def test_processes_racing_on_one_request_id_start_one_action(sql_url: str) -> None:
    open_store(sql_url).close()  # tables exist before the race (creation races are separate)
    results = race_processes(sql_url, "create")
    assert sum(1 for _, _, created in results if created) == 1
    assert len({action_id for _, action_id, _ in results}) == 1
    store = open_store(sql_url)
    try:
        assert len(store) == 1  # type: ignore[arg-type]
    finally:
        store.close()


def test_processes_racing_to_cancel_have_one_winner(sql_url: str) -> None:
    store = open_store(sql_url)
    try:
        store.create(make_record(1, runs=HOUR), T0)
        results = race_processes(sql_url, "cancel")
        winners = [cancelled_at for _, cancelled_at, _ in results if cancelled_at is not None]
        assert len(winners) == 1
        stored = store.get(make_record(1).action_id)
        assert stored is not None and stored.cancelled_at == winners[0]
    finally:
        store.close()


def test_processes_of_one_creator_at_the_limit_start_one_action(sql_url: str) -> None:
    store = open_store(sql_url)
    try:
        for n in range(LIMIT - 1):
            store.create(make_record(n), T0, LIMIT)
        results = race_processes(sql_url, "create_limited")
        assert sum(1 for _, _, created in results if created) == 1
        assert len(store) == LIMIT  # type: ignore[arg-type]
    finally:
        store.close()


def test_processes_creating_the_schema_together(sql_url: str) -> None:
    # Workers of a fresh deployment all start at once: one creates the tables.
    results = race_processes(sql_url, "create")
    assert sum(1 for _, _, created in results if created) == 1


# --- durability ---------------------------------------------------------------------------
def test_close_and_reopen_keeps_everything(sql_url: str) -> None:
    store = open_store(sql_url)
    records = enumeration_fixture()
    for record in records:
        store.create(record, T0)
    cancelled = store.cancel(make_record(1).action_id, T0 + MINUTE)
    store.release(make_record(2).action_id)
    store.close()

    reopened = open_store(sql_url)
    try:
        assert reopened.get(make_record(1).action_id) == cancelled
        assert reopened.get(make_record(2).action_id) is None
        assert reopened.get(make_record(4).action_id) == records[3]
        # Dedup survives the restart too.
        assert reopened.create(make_record(99, request_id="request-5", creator="bob"), T0) == (
            records[4],
            False,
        )
        assert reopened.ping()
    finally:
        reopened.close()


def test_released_and_swept_actions_leave_no_rows_behind(sql_url: str) -> None:
    store = open_store(sql_url)
    try:
        for n in range(6):
            store.create(make_record(n, monitor_by=("m",), manage_by=("g",)), T0)
        store.release(make_record(0).action_id)
        assert store.sweep(T0 + 2 * HOUR, 100) == 5
        for table in ("actions", "action_principals"):
            assert execute_directly(sql_url, f"SELECT count(*) FROM {table}") == [(0,)], table
    finally:
        store.close()


def backend_pid(store: Any) -> int:
    """The PostgreSQL session behind the store's next statement (LIFO pool)."""
    with store._pool.connection() as cursor:
        return int(cursor.connection.info.backend_pid)


@pytest.mark.parametrize("setting", ["on", "off"])
def test_prepared_statements_follow_the_url(postgres_url: str, setting: str) -> None:
    """psycopg prepares the hot statements unless the URL says not to (for a
    pooler in transaction mode that cannot keep them)."""
    store = open_store(f"{postgres_url}&prepared_statements={setting}")
    try:
        record = make_record(1)
        store.create(record, T0)
        for _ in range(3):
            assert store.get(record.action_id) == record
        with store._pool.connection() as cursor:  # type: ignore[attr-defined]
            cursor.execute("SELECT count(*) FROM pg_prepared_statements")
            prepared = cursor.fetchone()[0]
        assert (prepared > 0) == (setting == "on"), prepared
    finally:
        store.close()


def test_a_connection_the_server_closed_is_replaced_without_an_error(postgres_url: str) -> None:
    """No pre-ping: the next call sees the closed socket and reconnects, even
    a cancel (which is never repeated after a connection breaks under it)."""
    store = open_store(postgres_url)
    try:
        record = make_record(1)
        store.create(record, T0)
        pid = backend_pid(store)
        execute_directly(postgres_url, "SELECT pg_terminate_backend(%s, 5000)", (pid,))
        assert store.cancel(record.action_id, T0) is not None
        assert backend_pid(store) != pid
    finally:
        store.close()


def test_unexpected_driver_errors_do_not_carry_statement_values(sql_url: str) -> None:
    """An unexpected driver error is logged with its 500: never with the
    request's values (a label, a request_id) in it, though the database's
    own message quotes them (DETAIL: Key (...)=(...) already exists)."""
    from app.store import StoreError

    store = open_store(sql_url)
    try:
        store.create(make_record(1, label="secret-label-value"), T0)
        mark = "%s" if store.dialect == "postgresql" else "?"  # type: ignore[attr-defined]
        duplicate = f"INSERT INTO action_principals SELECT principal, start_time_us, " \
            f"action_id, roles FROM action_principals WHERE action_id = {mark}"
        with pytest.raises(StoreError) as caught:
            store._run(  # type: ignore[attr-defined]
                lambda conn: conn.execute(duplicate, (make_record(1).action_id,)), retry=False
            )
        assert "Violation" in str(caught.value) or "CONSTRAINT" in str(caught.value)
        assert make_record(1).action_id not in str(caught.value)
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
    finally:
        store.close()


def indexes(url: str) -> set[str]:
    if url.startswith("sqlite:"):
        sql = "SELECT name FROM sqlite_master WHERE type = 'index'"
    else:
        sql = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    return {name for (name,) in execute_directly(url, sql)}


def test_a_version_1_database_is_upgraded(sql_url: str) -> None:
    """Version 2 added the index counting a creator's live actions."""
    store = open_store(sql_url)
    records = [make_record(n) for n in range(LIMIT)]
    for record in records:
        store.create(record, T0)
    store.close()
    execute_directly(sql_url, "DROP INDEX actions_creator_live")
    execute_directly(sql_url, "UPDATE schema_version SET version = 1")
    assert "actions_creator_live" not in indexes(sql_url)

    upgraded = open_store(sql_url)
    try:
        assert execute_directly(sql_url, "SELECT version FROM schema_version") == [(2,)]
        assert "actions_creator_live" in indexes(sql_url)
        assert [upgraded.get(r.action_id) for r in records] == records
        assert refused(upgraded, make_record(10))
    finally:
        upgraded.close()


def test_the_live_count_is_an_index_range_scan(sql_url: str) -> None:
    store = open_store(sql_url)
    try:
        for n in range(300):
            store.create(make_record(n, creator=f"user{n % 100}"), T0)
        sql = store._statements["count_live"]  # type: ignore[attr-defined]
        explain = "EXPLAIN QUERY PLAN " if store.dialect == "sqlite" else "EXPLAIN "  # type: ignore[attr-defined]
        if store.dialect == "postgresql":  # type: ignore[attr-defined]
            execute_directly(sql_url, "ANALYZE actions")
        plan = execute_directly(sql_url, explain + sql, ("user7", 0, LIMIT))
        assert "actions_creator_live" in " ".join(str(line) for line in plan), plan
    finally:
        store.close()


def test_a_newer_schema_is_refused(sql_url: str) -> None:
    open_store(sql_url).close()
    execute_directly(sql_url, f"UPDATE schema_version SET version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNew, match="upgrade the code"):
        open_store(sql_url)


# --- URLs ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "mysql://u@h/db",
        "redis://h",
        "memory://extra",
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:////no/such/dir/a.db",
        "nonsense",
        "postgresql://u@h/db?prepared_statements=maybe",
    ],
)
def test_unknown_or_unusable_store_urls_are_refused_clearly(url: str) -> None:
    with pytest.raises(UnknownStoreURL, match=r"STORE_URL"):
        open_store(url)


# --- a database that does not answer ------------------------------------------------
def test_unreachable_postgresql_is_store_unavailable_not_a_driver_error() -> None:
    from app.store import StoreUnavailable
    from tests.server import closed_port

    with closed_port() as port, pytest.raises(StoreUnavailable):
        open_store(f"postgresql://nobody@127.0.0.1:{port}/none?connect_timeout=2")


def test_store_outage_is_503_json(make_app, alice, tmp_path) -> None:
    """A database that stops answering mid-service: 503 + Retry-After, not 500."""
    import shutil

    folder = tmp_path / "data"
    folder.mkdir()
    app = make_app(STORE_URL=f"sqlite:///{folder / 'actions.db'}")
    client = app.test_client()
    body = {"request_id": "r", "body": {"utc_offset": 1}}
    assert client.post("/run", headers=alice.headers, json=body).status_code == 202
    app.extensions["store"].close()  # drop pooled connections...
    shutil.rmtree(folder)  # ...and the database file can no longer be opened
    response = client.post("/run", headers=alice.headers, json={**body, "request_id": "r2"})
    assert response.status_code == 503, response.json
    assert response.json["code"] == "StoreUnavailable"
    assert response.headers["Retry-After"]
    assert client.get("/healthz").status_code == 503
