"""Store benchmark (not a test): how each backend compares with memory.

    .venv/bin/python -m bench.store_bench                   # all figures, 1M bulk
    .venv/bin/python -m bench.store_bench --bulk 100000     # quicker
    .venv/bin/python -m bench.store_bench --postgres-url postgresql://postgres@127.0.0.1/test

Prints, for memory, sqlite (a temporary file) and postgresql (a temporary
schema, dropped at the end):
1. run + status throughput through the whole Flask app (dev auth, in process),
   as a ratio to memory measured in the same run;
2. status latency (through the app, and store.get alone) with 1,000 stored
   actions and with --bulk stored actions (inserted directly: executemany on
   SQLite, COPY on PostgreSQL), and the ratio of the two;
3. bytes per stored action in the memory store (tracemalloc over 20,000 runs),
   and on disk for the SQL stores (at --bulk actions).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from flask.testing import FlaskClient

from app import create_app
from app.store import ActionRecord, MemoryStore
from app.store.sql import _COLUMNS, SQLStore, _principal_rows, _row
from tests.postgres import temporary_schema

TOKEN = {"Authorization": "Bearer dev-token-bench"}


def app_client(url: str) -> tuple[Any, FlaskClient]:
    app = create_app(
        {
            "AUTH_MODE": "dev",
            "STORE_URL": url,
            "MIN_DELAY_SECONDS": 600,
            "MAX_DELAY_SECONDS": 600,
        }
    )
    return app, app.test_client()


def run_once(client: FlaskClient) -> str:
    body = {"request_id": str(uuid.uuid4()), "body": {"utc_offset": 5.5}}
    response = client.post("/run", json=body, headers=TOKEN)
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()["action_id"]


def warm_up(client: FlaskClient) -> None:
    for _ in range(20):  # token cache, connection pool, compiled-statement cache
        client.get(f"/{run_once(client)}/status", headers=TOKEN)


def run_and_status(client: FlaskClient, pairs: int) -> float:
    """Seconds for ``pairs`` run + status calls."""
    started = time.perf_counter()
    for _ in range(pairs):
        action_id = run_once(client)
        assert client.get(f"/{action_id}/status", headers=TOKEN).status_code == 200
    return time.perf_counter() - started


def latency(client: FlaskClient, store: Any, ids: list[str], calls: int) -> tuple[float, float]:
    """Median microseconds of a status call through the app, and of store.get."""
    rng = random.Random(1)
    through_app: list[float] = []
    get_only: list[float] = []
    for _ in range(4):  # interleaved rounds, so a burst of machine noise hits both
        picks = [rng.choice(ids) for _ in range(calls // 4)]
        for action_id in picks:
            t = time.perf_counter()
            response = client.get(f"/{action_id}/status", headers=TOKEN)
            through_app.append(time.perf_counter() - t)
            assert response.status_code == 200
        for action_id in picks:
            t = time.perf_counter()
            assert store.get(action_id) is not None
            get_only.append(time.perf_counter() - t)
    return statistics.median(through_app) * 1e6, statistics.median(get_only) * 1e6


def settle(store: Any) -> None:
    """After a bulk load: fresh planner statistics, WAL checkpointed, so the
    figures show a steady state rather than the load's aftermath."""
    if isinstance(store, MemoryStore):
        return
    raw = store._engine.raw_connection()
    try:
        if store.dialect == "sqlite":
            raw.execute("ANALYZE")
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            connection = raw.driver_connection
            connection.commit()
            connection.autocommit = True
            connection.execute("VACUUM ANALYZE actions")
            connection.execute("VACUUM ANALYZE action_principals")
            connection.autocommit = False
    finally:
        raw.close()


def bytes_on_disk(store: Any) -> int | None:
    """Size of a SQL store's tables and indexes (after settle())."""
    if isinstance(store, MemoryStore):
        return None
    if store.dialect == "sqlite":
        return os.path.getsize(store.url.database)
    raw = store._engine.raw_connection()
    try:
        row = raw.driver_connection.execute(
            "SELECT pg_total_relation_size('actions') + pg_total_relation_size('action_principals')"
        ).fetchone()
        return int(row[0])
    finally:
        raw.close()


def bulk_records(template: ActionRecord, count: int, start: int) -> Iterator[ActionRecord]:
    base = datetime.now(UTC) - timedelta(days=1)
    for n in range(start, start + count):
        yield dataclasses.replace(
            template,
            action_id=str(uuid.UUID(int=n + 1)),
            request_id=f"bulk-{n}",
            start_time=base + timedelta(microseconds=n),
            estimated_completion_time=base + timedelta(days=2, microseconds=n),
        )


def bulk_insert(store: Any, template: ActionRecord, count: int, start: int) -> list[str]:
    """Store ``count`` copies of ``template`` directly; return some of their ids."""
    ids: list[str] = []
    batch = 50_000
    for offset in range(start, start + count, batch):
        records = list(bulk_records(template, min(batch, start + count - offset), offset))
        ids.extend(r.action_id for r in records[:: max(1, len(records) // 200)])
        if isinstance(store, MemoryStore):
            for record in records:
                store.create(record, record.start_time)
        elif store.dialect == "sqlite":
            _sqlite_bulk(store, records)
        else:
            _postgres_bulk(store, records)
    return ids


def _principals(records: list[ActionRecord]) -> list[tuple[str, int, str, int]]:
    """The action_principals rows of ``records``."""
    return [(principal, _row(r)["start_time_us"], r.action_id, mask)
            for r in records for principal, mask in _principal_rows(r)]


def _sqlite_bulk(store: SQLStore, records: list[ActionRecord]) -> None:
    import json

    with store._pool.connection() as conn:
        conn.execute("BEGIN IMMEDIATE")
        rows = []
        for record in records:
            row = _row(record)
            row["monitor_by"] = json.dumps(row["monitor_by"])
            row["manage_by"] = json.dumps(row["manage_by"])
            rows.append([row[c] for c in _COLUMNS])
        marks = ",".join("?" * len(_COLUMNS))
        conn.executemany(f"INSERT INTO actions ({','.join(_COLUMNS)}) VALUES ({marks})", rows)
        conn.executemany("INSERT INTO action_principals VALUES (?,?,?,?)", _principals(records))
        conn.execute("COMMIT")


def _postgres_bulk(store: SQLStore, records: list[ActionRecord]) -> None:
    from psycopg.types.json import Json

    with store._pool.connection() as cursor, cursor.connection.transaction():
        with cursor.copy(f"COPY actions ({','.join(_COLUMNS)}) FROM STDIN") as copy:
            for record in records:
                row = _row(record)
                row["monitor_by"] = Json(row["monitor_by"])
                row["manage_by"] = Json(row["manage_by"])
                copy.write_row([row[c] for c in _COLUMNS])
        names = "principal, start_time_us, action_id, roles"
        with cursor.copy(f"COPY action_principals ({names}) FROM STDIN") as copy:
            for row in _principals(records):
                copy.write_row(row)


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str | None]:
    """A fresh schema (tests/postgres.py's helper), or None if unreachable."""
    with ExitStack() as stack:
        try:
            url: str | None = stack.enter_context(temporary_schema(base_url, "wt_bench"))
        except psycopg.Error as error:
            print(f"postgresql: skipped, unreachable ({error})", file=sys.stderr)
            url = None
        yield url


def bytes_per_memory_action(count: int = 20_000) -> float:
    """Traced memory growth of a memory-store service per action it keeps,
    over ``count`` real run calls (one caller, so identities are shared as in
    a real process; each action has its own ids, fingerprint and result)."""
    app, client = app_client("memory://")
    store = app.extensions["store"]
    for _ in range(50):  # warm up: token cache, lazy imports, first allocations
        run_once(client)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = len(store)
    for _ in range(count):
        run_once(client)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / (len(store) - kept)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=500, help="run+status pairs per backend")
    parser.add_argument("--bulk", type=int, default=1_000_000, help="actions for the big store")
    parser.add_argument("--memory-actions", type=int, default=20_000, help="for bytes/action")
    parser.add_argument("--calls", type=int, default=2_000, help="status calls per latency figure")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    args = parser.parse_args()
    if not 5 <= args.pairs <= 900 or args.bulk < 2_000:
        parser.error("need 5 <= --pairs <= 900 (the small store holds 1,000) and --bulk >= 2000")

    with tempfile.TemporaryDirectory() as tmp, postgres_schema(args.postgres_url) as pg_url:
        urls = {"memory": "memory://", "sqlite": f"sqlite:///{tmp}/bench.db"}
        if pg_url:
            urls["postgresql"] = pg_url
        apps = {name: app_client(url) for name, url in urls.items()}
        # Throughput in interleaved rounds, so machine noise hits every backend alike.
        rounds, per_round = 5, max(1, args.pairs // 5)
        spent = dict.fromkeys(urls, 0.0)
        for _, client in apps.values():
            warm_up(client)
        for _ in range(rounds):
            for name, (_, client) in apps.items():
                spent[name] += run_and_status(client, per_round)
        rates = {name: rounds * per_round / seconds for name, seconds in spent.items()}

        small: dict[str, tuple[float, float]] = {}
        big: dict[str, tuple[float, float]] = {}
        disk: dict[str, float] = {}
        for name in urls:
            app, client = apps.pop(name)
            store = app.extensions["store"]
            template = store.get(run_once(client))
            have = len(store)
            ids = bulk_insert(store, template, 1_000 - have, 0)
            assert len(store) == 1_000
            settle(store)
            small[name] = latency(client, store, ids, args.calls)
            started = time.perf_counter()
            ids = bulk_insert(store, template, args.bulk - 1_000, 1_000)
            settle(store)
            load = time.perf_counter() - started
            assert len(store) == args.bulk
            big[name] = latency(client, store, ids, args.calls)
            size = bytes_on_disk(store)
            if size is not None:
                disk[name] = size / args.bulk
            print(f"{name}: loaded {args.bulk - 1_000:,} actions in {load:.0f} s", file=sys.stderr)
            store.close()
            del app, client, store, template, ids
            gc.collect()

    print(f"run+status throughput ({args.pairs} pairs, in-process Flask app, dev auth)")
    for name, rate in rates.items():
        print(f"  {name:<11} {rate:8.0f} pairs/s   ratio to memory {rate / rates['memory']:.2f}")
    print(f"status latency, median of {args.calls} random lookups: 1,000 vs {args.bulk:,} stored")
    for name in urls:
        (app_small, get_small), (app_big, get_big) = small[name], big[name]
        print(
            f"  {name:<11} status {app_small:6.0f} -> {app_big:6.0f} us"
            f" (x{app_big / app_small:.2f})   store.get {get_small:6.1f} -> {get_big:6.1f} us"
            f" (x{get_big / get_small:.2f})"
        )
    for name, size in disk.items():
        print(f"{name}: {size:.0f} bytes per stored action on disk (tables + indexes)")
    per_action = bytes_per_memory_action(args.memory_actions)
    print(
        f"memory store: {per_action:.0f} bytes per stored action"
        f" (tracemalloc, {args.memory_actions:,} runs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
