"""The SQL stores' connections: a bounded pool shared by threads that come and
go, nothing that waits forever, and no connection handed across a fork.

Each case runs on SQLite and PostgreSQL unless it says otherwise. Waiting is
provoked for real: another connection holds the write lock (SQLite) or the
action's row (PostgreSQL) while the store's statement needs it.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from app.settings import ConfigError, load_settings
from app.store import StoreUnavailable
from app.store.sql import PoolSettings, SQLStore, sqlite_path
from tests.postgres import conninfo
from tests.store_fixtures import execute_directly
from tests.test_store_contract import HOUR, T0, make_record


@contextmanager
def lock_held(url: str, action_id: str) -> Iterator[None]:
    """Another client holds what a cancel of ``action_id`` must wait for."""
    if url.startswith("sqlite:"):
        conn: Any = sqlite3.connect(sqlite_path(url), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
    else:
        conn = psycopg.connect(conninfo(url))
        conn.execute("SELECT 1 FROM actions WHERE action_id = %s FOR UPDATE", (action_id,))
    try:
        yield
    finally:
        conn.rollback()
        conn.close()


def test_a_statement_that_waits_too_long_is_store_unavailable(sql_url: str) -> None:
    store = SQLStore(sql_url, PoolSettings(statement_timeout=0.3))
    try:
        record = make_record(1, runs=HOUR)
        store.create(record, T0)
        with lock_held(sql_url, record.action_id), pytest.raises(
            StoreUnavailable, match=r"statement timeout|locked"
        ):
            store.cancel(record.action_id, T0)
        # The connection is fine afterwards: the next statement succeeds on it.
        assert store.cancel(record.action_id, T0) is not None
    finally:
        store.close()


def test_no_free_connection_in_time_is_store_unavailable(sql_url: str) -> None:
    store = SQLStore(sql_url, PoolSettings(size=1, timeout=0.2, statement_timeout=30))
    try:
        record = make_record(1, runs=HOUR)
        store.create(record, T0)
        outcome: list[Any] = []
        with lock_held(sql_url, record.action_id):
            waiting = threading.Thread(target=lambda: outcome.append(store.cancel(
                record.action_id, T0)))
            waiting.start()  # holds the pool's one connection while it waits
            with pytest.raises(StoreUnavailable, match=r"no free connection within 0\.2 s"):
                while waiting.is_alive():
                    store.get(record.action_id)
        waiting.join(timeout=30)
        assert outcome and outcome[0] is not None and outcome[0].cancelled_at == T0
        assert store.get(record.action_id) == outcome[0]
    finally:
        store.close()


def test_threads_that_come_and_go_share_a_bounded_set_of_connections(
    postgres_url: str,
) -> None:
    """As under a server whose thread pool grows and shrinks: 48 short-lived
    threads, 12 at a time, leave no more sessions than the pool's size."""
    name = f"wt_pool_{uuid.uuid4().hex[:8]}"
    store = SQLStore(f"{postgres_url}&application_name={name}", PoolSettings(size=3))
    failures: list[BaseException] = []

    def client(n: int) -> None:
        try:
            record = make_record(n)
            assert store.create(record, T0) == (record, True)
            assert store.get(record.action_id) == record
        except BaseException as error:  # reported below, with the count
            failures.append(error)

    try:
        for wave in range(4):
            threads = [threading.Thread(target=client, args=(wave * 12 + i,)) for i in range(12)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
        assert failures == []
        assert len(store) == 48
        sessions = execute_directly(
            postgres_url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (name,))[0][0]
        assert 1 <= sessions <= 3, sessions
        store.close()
        after = execute_directly(
            postgres_url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (name,))[0][0]
        assert after == 0
    finally:
        store.close()


def _child(store: SQLStore, action_id: str, queue: Any) -> None:
    try:
        from tests.test_store_contract import backend_pid

        queue.put((store.get(action_id) is not None, backend_pid(store)))
    except BaseException as error:  # reported to the test
        queue.put((False, repr(error)))


def test_a_forked_child_opens_its_own_connections(postgres_url: str) -> None:
    """A store used in a parent and then forked (a server's workers): the child
    never uses nor closes the parent's session."""
    from tests.test_store_contract import backend_pid

    store = SQLStore(postgres_url)
    try:
        record = make_record(1)
        store.create(record, T0)
        parent_pid = backend_pid(store)
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_child, args=(store, record.action_id, queue))
        child.start()
        found, child_pid = queue.get(timeout=60)
        child.join(timeout=60)
        assert child.exitcode == 0
        assert found is True and isinstance(child_pid, int) and child_pid != parent_pid
        assert backend_pid(store) == parent_pid  # still open: the child left it alone
        assert store.get(record.action_id) == record
    finally:
        store.close()


def test_a_statement_timeout_is_a_503_with_retry_after(make_app, alice, postgres_url) -> None:  # type: ignore[no-untyped-def]
    app = make_app(STORE_URL=postgres_url, STORE_STATEMENT_TIMEOUT_SECONDS=0.3,
                   MIN_DELAY_SECONDS=600, MAX_DELAY_SECONDS=600)
    client = app.test_client()
    started = client.post("/run", headers=alice.headers,
                          json={"request_id": "r", "body": {"utc_offset": 1}})
    assert started.status_code == 202, started.json
    action_id = started.json["action_id"]
    with lock_held(postgres_url, action_id):
        response = client.post(f"/{action_id}/cancel", headers=alice.headers)
    assert response.status_code == 503, response.json
    assert response.json == {
        "code": "StoreUnavailable",
        "description": "The action store is unavailable; try again shortly.",
    }
    assert int(response.headers["Retry-After"]) > 0
    app.extensions["store"].close()


@pytest.mark.parametrize(
    ("key", "value"),
    [("STORE_POOL_SIZE", 0), ("STORE_POOL_TIMEOUT_SECONDS", 0),
     ("STORE_STATEMENT_TIMEOUT_SECONDS", -1), ("STORE_POOL_SIZE", "many")],
)
def test_bad_store_settings_are_refused_naming_the_key(key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"bad setting {key}="):
        load_settings({key: value})


def test_the_store_defaults_are_config_py_s() -> None:
    assert PoolSettings.from_config(load_settings()) == PoolSettings()


def test_sql_stores_need_no_sqlalchemy(sqlite_url: str) -> None:
    """One database layer: the drivers. Nothing the service runs imports SQLAlchemy."""
    code = (
        "import sys; from app import create_app; "
        f"app = create_app({{'AUTH_MODE': 'dev', 'STORE_URL': {sqlite_url!r}}}); "
        "app.extensions['store'].close(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sqlalchemy'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stdout
