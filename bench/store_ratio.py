"""Issue 15's benchmark: the service on each SQL store against the memory store.

    .venv/bin/python -m bench.store_ratio                 # 3 rounds of 5 s runs
    .venv/bin/python -m bench.store_ratio --rounds 5 --prefill 5000

One server per store (python -m app, 1 worker, dev auth),
each holding --prefill actions (memory: bench/prefilled.py; SQLite and
PostgreSQL: bulk-loaded before the server starts; PostgreSQL is a private
cluster started for the run (tests/postgres.py; or --pg-url, a fresh schema
there), plus PostgreSQL with 2 and 3 workers. Each round loads
every server in turn with wrk (also PostgreSQL with
``prepared_statements=off``) (-t1 -c4): ``status`` of one action among the
prefilled ones, ``run`` with fresh request_ids: per scenario the memory
store, the SQL stores (their order alternating from round to round), the
memory store again, then the 2- and 3-worker servers. A store's ratio is its
requests/s over the mean of the two memory runs around it.

Each round also measures, from this process, what a request cannot avoid
paying on each store: PostgreSQL's round trip (``SELECT 1``), one
``store.get`` and ``store.create`` through the store's own code, and the
disk's flush (fdatasync of an 8 kB write, as pg_test_fsync does, on the
file systems of PostgreSQL's data and the SQLite file), and the flushes
during the run scenario itself: PostgreSQL's own (pg_stat_wal's mean
wal_sync_time) and, beside the SQLite run, the same probe every 20 ms. From
them: the best ratio a status or run could reach if the service spent
nothing beyond the memory store but one round trip (and, for a run, that
flush): ``ceiling``. The round trip is timed after as much CPU work as a
memory-store request does: on these shared cores a backend woken after
such a burst waits for a core, and that, not the code, is most of a
status's extra time when other jobs load the machine. Results, every round,
go to bench/results/store-<time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from app.store import ActionRecord
from app.store.sql import _STATEMENTS, SQLStore, _sql
from bench import run as runner
from bench import store_bench
from tests.postgres import conninfo, private_cluster, temporary_schema

SCENARIOS = ("status", "run")
TARGETS = {("postgresql", "status"): 0.85, ("postgresql", "run"): 0.70,
           ("sqlite", "status"): 0.85, ("sqlite", "run"): 0.50}


def median_us(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1e6, 1)


def fsync_probe(folder: Path, count: int = 100) -> float:
    """Median µs of one 8 kB write + fdatasync in ``folder`` (pg_test_fsync's test)."""
    block = os.urandom(8192)
    fd, name = tempfile.mkstemp(dir=folder, prefix="fsync-probe-")
    samples = []
    try:
        for _ in range(count):
            os.lseek(fd, 0, os.SEEK_SET)
            started = time.perf_counter()
            os.write(fd, block)
            os.fdatasync(fd)
            samples.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        os.unlink(name)
    return median_us(samples)


class FlushProber:
    """fsync_probe's write + fdatasync every 20 ms in a thread, while a load runs."""

    def __init__(self, folder: Path) -> None:
        self.samples: list[float] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._probe, args=(folder,))
        self.thread.start()

    def _probe(self, folder: Path) -> None:
        while not self.done.wait(0.02):
            self.samples.append(fsync_probe(folder, 1))

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        return round(statistics.median(self.samples), 1) if self.samples else 0.0


def wal_flushes(conn: psycopg.Connection) -> tuple[float, float]:
    """(WAL flushes, ms spent in them) so far: pg_stat_wal (the time needs
    track_wal_io_timing, on in the private cluster; else 0)."""
    row = conn.execute("SELECT wal_sync, wal_sync_time FROM pg_stat_wal").fetchone()
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return float(row[0]), float(row[1])


def round_trip_probe(url: str, sql: str = "SELECT 1", params: Sequence[str] = (),
                     busy_us: float = 0, count: int = 300) -> float:
    """Median µs of one execution of the prepared statement ``sql`` through
    libpq itself (psycopg.pq's PQexecPrepared: none of psycopg's Python, none
    of ours), each sent after ``busy_us`` of CPU work, as a request's is: what
    any client pays for the statement on this machine, the floor under a
    store's round trip. After a burst of work the backend's core has gone
    idle and must be woken (on these virtual cores, no small cost)."""
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        pg = conn.pgconn
        pg.prepare(b"probe", sql.replace("%s", "$1").encode())
        values = [v.encode() for v in params]
        samples = []
        for _ in range(count):
            end = time.perf_counter() + busy_us / 1e6
            while time.perf_counter() < end:
                pass
            started = time.perf_counter()
            result = pg.exec_prepared(b"probe", values)
            samples.append(time.perf_counter() - started)
            assert result.ntuples == 1, result.error_message
    return median_us(samples)


def record(template: ActionRecord, now: datetime) -> ActionRecord:
    import dataclasses

    return dataclasses.replace(template, action_id=str(uuid.uuid4()),
                               request_id=f"probe-{uuid.uuid4()}", start_time=now,
                               estimated_completion_time=now + timedelta(days=1))


def store_probe(store: SQLStore, template: ActionRecord, count: int = 200) -> dict[str, float]:
    """Median µs of store.get and store.create, through the store's own code."""
    now = datetime.now(UTC)
    gets, creates = [], []
    for _ in range(count):
        started = time.perf_counter()
        store.get(template.action_id)
        gets.append(time.perf_counter() - started)
    for _ in range(count // 2):
        fresh = record(template, now)
        started = time.perf_counter()
        store.create(fresh, now)
        creates.append(time.perf_counter() - started)
    return {"get_us": median_us(gets), "create_us": median_us(creates)}


def prefill(url: str, count: int) -> None:
    """``count`` actions straight into the store (COPY / executemany)."""
    app, client = store_bench.app_client(url)
    store = app.extensions["store"]
    template = store.get(store_bench.run_once(client))
    store_bench.bulk_insert(store, template, count - 1, 0)
    store_bench.settle(store)
    store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store_ratio", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--prefill", type=int, default=5_000, help="actions in each store")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_POSTGRES_URL"),
                        help="a PostgreSQL server to use (a fresh schema in it); default: "
                        "a private cluster (initdb) with track_wal_io_timing, whose flush "
                        "times during the run scenario are then reported")
    parser.add_argument("--pg-workers", type=int, action="append",
                        help="also PostgreSQL with this many workers (default 2 and 3)")
    args = parser.parse_args(argv)
    args.rounds = max(3, args.rounds)
    pg_workers = args.pg_workers or [2, 3]
    wrk_bin = runner.ensure_wrk()
    paths = runner.PATHS["classic"]
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-store-")))
        if args.pg_url is None:
            cluster = stack.enter_context(private_cluster({"track_wal_io_timing": "on"}))
            args.pg_url = cluster.url
        pg_url = stack.enter_context(temporary_schema(args.pg_url, "wt_bench"))
        with psycopg.connect(conninfo(args.pg_url)) as conn:
            # The flush probe writes beside the data directory: same file system.
            pg_folder = Path(conn.execute("SHOW data_directory").fetchone()[0]).parent
        wal = psycopg.connect(conninfo(args.pg_url), autocommit=True)
        stack.callback(wal.close)
        urls = {"memory": "memory://", "sqlite": f"sqlite:///{tmp / 'bench.db'}",
                "postgresql": pg_url}
        print(f"prefilling {args.prefill:,} actions per store", flush=True)
        for name in ("sqlite", "postgresql"):
            prefill(urls[name], args.prefill)
        servers: dict[str, str] = {}
        for name, url in urls.items():
            env = runner.service_env(runner.Store(name, url, shared=True))
            if name == "memory":
                env["BENCH_PREFILL"] = str(args.prefill)
                app = "bench.prefilled:create_app()"
            else:
                app = "app:create_app()"
            servers[name] = stack.enter_context(runner.serve(app, 1, env))
        # The same with psycopg's prepared statements off (as through PgBouncer < 1.21).
        env = runner.service_env(runner.Store("postgresql", pg_url, shared=True))
        env["FLASK_STORE_URL"] = f"{pg_url}&prepared_statements=off"
        servers["postgresql/noprep"] = stack.enter_context(
            runner.serve("app:create_app()", 1, env))
        for workers in pg_workers:
            env = runner.service_env(runner.Store("postgresql", pg_url, shared=True))
            servers[f"postgresql/w{workers}"] = stack.enter_context(
                runner.serve("app:create_app()", workers, env))
        ids = {name: runner.start_action(url, paths) for name, url in servers.items()}
        probes_stores = {name: SQLStore(urls[name]) for name in ("sqlite", "postgresql")}
        templates = {name: store.get(ids[name]) for name, store in probes_stores.items()}
        for name, url in servers.items():  # warm-up
            for scenario in SCENARIOS:
                runner.scenario_call(scenario, wrk_bin, url, 1, paths, ids[name])

        rounds: list[dict[str, Any]] = []
        compared = ["sqlite", "postgresql", "postgresql/noprep"]
        scans = [name for name in servers if name.startswith("postgresql/w")]
        for number in range(args.rounds):
            measured: dict[str, Any] = {}
            during: dict[str, float] = {}
            for scenario in SCENARIOS:
                # memory, the SQL stores (order alternating by round), memory
                # again: each ratio is to the mean of the two memory runs
                # around it, so a drift of the machine's speed cancels out.
                middle = compared if number % 2 == 0 else compared[::-1]
                for position, name in enumerate(["memory", *middle, "memory", *scans]):
                    flushes_before = wal_flushes(wal)
                    prober = FlushProber(tmp) if (name, scenario) == ("sqlite", "run") else None
                    m = runner.scenario_call(scenario, wrk_bin, servers[name], args.duration,
                                             paths, ids[name])
                    key = f"{name} {scenario}"
                    if name == "memory":
                        key += " (before)" if position == 0 else " (after)"
                    measured[key] = m.__dict__
                    if (name, scenario) == ("postgresql", "run"):
                        count, ms = (a - b for a, b in
                                     zip(wal_flushes(wal), flushes_before, strict=True))
                        during["pg_flush_us_during_run"] = round(ms * 1e3 / max(count, 1), 1)
                    if prober is not None:
                        during["fsync_us_during_sqlite_run"] = prober.stop()
                measured[f"memory {scenario}"] = {"rps": statistics.mean(
                    measured[f"memory {scenario} ({when})"]["rps"] for when in ("before", "after")
                ), "p50_ms": 0, "bad_status": 0, "socket_errors": 0}
            probes = {
                **during,
                "pg_round_trip_us": round_trip_probe(urls["postgresql"]),
                # The status statement itself, idle and after as much CPU work as a
                # memory-store status does; SELECT 1 after a memory-store run's.
                "pg_get_us": round_trip_probe(urls["postgresql"], _sql(_STATEMENTS["get"], pg=True),
                                              [ids["postgresql"]]),
                "pg_get_after_busy_us": round_trip_probe(
                    urls["postgresql"], _sql(_STATEMENTS["get"], pg=True), [ids["postgresql"]],
                    1e6 / measured["memory status"]["rps"]),
                "pg_round_trip_after_run_busy_us": round_trip_probe(
                    urls["postgresql"], busy_us=1e6 / measured["memory run"]["rps"]),
                "fsync_pg_wal_us": fsync_probe(pg_folder),
                "fsync_sqlite_us": fsync_probe(tmp),
                **{f"{name} {k}": v for name, store in probes_stores.items()
                   for k, v in store_probe(store, templates[name]).items()},
            }
            ratios = {
                f"{store} {scenario}": round(measured[f"{store} {scenario}"]["rps"]
                                             / measured[f"memory {scenario}"]["rps"], 3)
                for store in compared for scenario in SCENARIOS
            }
            memory_run_us = 1e6 / measured["memory run"]["rps"]
            pg_flush = during.get("pg_flush_us_during_run") or probes["fsync_pg_wal_us"]
            sqlite_flush = during["fsync_us_during_sqlite_run"]
            memory_status_us = 1e6 / measured["memory status"]["rps"]
            get_trip = probes["pg_get_after_busy_us"]
            run_trip = probes["pg_round_trip_after_run_busy_us"]
            ceilings = {
                "postgresql status": round(memory_status_us / (memory_status_us + get_trip), 3),
                "postgresql run": round(memory_run_us / (memory_run_us + pg_flush + run_trip), 3),
                "sqlite run": round(memory_run_us / (memory_run_us + sqlite_flush), 3),
            }
            rounds.append({"measured": measured, "ratios": ratios, "probes": probes,
                           "ceilings": ceilings})
            print(f"round {number + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())
                  + f" | probes {probes} | ceilings {ceilings}", flush=True)
        for store in probes_stores.values():
            store.close()

    report = summarize(rounds, servers)
    runner.RESULTS.mkdir(exist_ok=True)
    out = runner.RESULTS / f"store-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"settings": vars(args) | {"pg_workers": pg_workers},
                               "rounds": rounds, "summary": report}, indent=2, default=str))
    print_report(report)
    print(f"\nwritten to {out.relative_to(runner.ROOT)}")
    return 0


def summarize(rounds: list[dict[str, Any]], servers: dict[str, str]) -> dict[str, Any]:
    med = statistics.median
    out: dict[str, Any] = {"ratios": {}, "rps": {}, "p50_ms": {}, "probes": {}, "ceilings": {}}
    for key in rounds[0]["ratios"]:
        values = [r["ratios"][key] for r in rounds]
        out["ratios"][key] = {"median": round(med(values), 3), "rounds": values}
    for key in rounds[0]["measured"]:
        values = [round(r["measured"][key]["rps"]) for r in rounds]
        out["rps"][key] = {"median": round(med(values)), "rounds": values}
        out["p50_ms"][key] = round(med(r["measured"][key]["p50_ms"] for r in rounds), 2)
    for key in rounds[0]["probes"]:
        values = [r["probes"][key] for r in rounds]
        out["probes"][key] = {"median": round(med(values), 1), "rounds": values}
    for key in rounds[0]["ceilings"]:
        values = [r["ceilings"][key] for r in rounds]
        out["ceilings"][key] = {"median": round(med(values), 3), "rounds": values}
    out["bad"] = sum(m["bad_status"] + m["socket_errors"]
                     for r in rounds for m in r["measured"].values())
    return out


def print_report(report: dict[str, Any]) -> None:
    print("\n| ratio to memory (1 sync worker) | median | per round | target |")
    print("|---|---:|---|---:|")
    for key, value in report["ratios"].items():
        store, scenario = key.split()
        target = TARGETS.get((store, scenario))
        mark = "" if target is None else f"≥ {target} " + (
            "✔" if value["median"] >= target else "✘")
        print(f"| {key} | {value['median']:.2f} | {', '.join(f'{v:.2f}' for v in value['rounds'])}"
              f" | {mark} |")
    print("\n| server scenario | req/s median | per round | p50 ms |")
    print("|---|---:|---|---:|")
    for key, value in report["rps"].items():
        print(f"| {key} | {value['median']} | {', '.join(map(str, value['rounds']))} "
              f"| {report['p50_ms'][key]} |")
    print("\n| probe | median | per round |")
    print("|---|---:|---|")
    for key, value in {**report["probes"], **report["ceilings"]}.items():
        label = f"{key} ceiling: memory's time / (it + [flush] + libpq round trip after busy)" \
            if key in report["ceilings"] else key
        print(f"| {label} | {value['median']} | {', '.join(map(str, value['rounds']))} |")
    print(f"\nnon-2xx or socket errors: {report['bad']}")


if __name__ == "__main__":
    sys.exit(main())
