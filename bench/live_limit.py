"""What the live-action limit costs a run on PostgreSQL (and SQLite): one
``SQLStore.create`` timed for an identity with few live actions, for one a
single action below the limit, and for one at the limit (refused), against
a create without the limit.

    .venv/bin/python -m bench.live_limit [--limit 10000] [--calls 500] [--store postgresql]

On a fresh schema (BENCH_POSTGRES_URL, default the local server) or SQLite
file, in this process: the "full" identity gets ``--limit`` - 1 live actions
(among 100,000 of 100 other identities with --others), then each case runs
``--calls`` times; an action created is released again, untimed, so each
case keeps its count. Prints one JSON line: p50/p99 microseconds per case.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.store import ActionRecord, LiveActionLimitReached, open_store
from tests.postgres import temporary_schema

PG_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
NOW = datetime.now(UTC)


def record(creator: str) -> ActionRecord:
    return ActionRecord(
        action_id=str(uuid.uuid4()), creator_id=creator, request_id=str(uuid.uuid4()),
        fingerprint=os.urandom(16), start_time=NOW,
        estimated_completion_time=NOW + timedelta(days=1), release_after=timedelta(days=30),
        result=NOW.isoformat(), monitor_by=(creator,), manage_by=(creator,),
    )


def percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_us": round(cuts[49]), "p99_us": round(cuts[98])}


def bench(url: str, limit: int, calls: int, others: int) -> dict[str, object]:
    store = open_store(url)
    for i in range(others):
        store.create(record(f"other{i % 100}"), NOW)
    for _ in range(limit - 1):
        store.create(record("full"), NOW)
    for _ in range(3):
        store.create(record("few"), NOW)

    def timed(creator: str, live_limit: int | None) -> Callable[[], float]:
        def once() -> float:
            new = record(creator)
            t0 = time.perf_counter()
            try:
                created = store.create(new, NOW, live_limit)[1]
            except LiveActionLimitReached:
                created = False
            elapsed = (time.perf_counter() - t0) * 1e6
            if created:
                store.release(new.action_id)
            return elapsed
        return once

    cases = {
        "no_limit_few_actions": timed("few", None),
        "few_actions": timed("few", limit),
        "one_below_the_limit": timed("full", limit),
    }
    results = {name: percentiles([case() for _ in range(calls)]) for name, case in cases.items()}
    store.create(record("full"), NOW, limit)  # now at the limit: refused from here
    results["at_the_limit_refused"] = percentiles(
        [timed("full", limit)() for _ in range(calls)])
    store.close()
    return {"store": url.split(":")[0], "limit": limit, "others": others, "calls": calls,
            **results}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--others", type=int, default=0)
    parser.add_argument("--store", choices=("postgresql", "sqlite"), default="postgresql")
    args = parser.parse_args()
    if args.store == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'actions.db'}"
            print(json.dumps(bench(url, args.limit, args.calls, args.others)))
        return
    with temporary_schema(PG_URL, "bench_live") as url:
        print(json.dumps(bench(url, args.limit, args.calls, args.others)))


if __name__ == "__main__":
    main()
