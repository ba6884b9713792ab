"""Enumerate in the memory store stays flat: one caller's GET /actions (3
actions of her own) among 1,000 or 1,000,000 actions of others.

    .venv/bin/python -m bench.enumerate [--others 1000 1000000] [--calls 2000]

For each count, in this process: a MemoryStore with that many actions of
100 other identities, plus hers; then the median and p99 time of one
``MemoryStore.enumerate`` (her principals, every role and status, limit 100),
of one ``ActionService.enumerate`` (the same through the service: her
statuses rendered), and, for comparison, of the scan of every action that
the store did before its index by principal. Prints one JSON line per count.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from globus_action_provider_tools.data_types import ActionRequest

from app import create_app
from app.store import ActionRecord, MemoryStore
from app.store.base import ROLES, effective_status, holds_role
from bench.fill import BENCH_CONFIG, callers

STATUSES = frozenset({"ACTIVE", "SUCCEEDED", "FAILED", "INACTIVE"})


def timed(calls: int, work: Callable[[], object]) -> dict[str, float]:
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter()
        work()
        samples.append((time.perf_counter() - t0) * 1e6)
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_us": round(cuts[49], 1), "p99_us": round(cuts[98], 1)}


def scan(store: MemoryStore, principals: frozenset[str], now: datetime) -> list[ActionRecord]:
    """What enumerate did before the index: look at every stored action."""
    found = [
        record for record in list(store._records.values())
        if record.release_at > now and effective_status(record, now) in STATUSES
        and any(holds_role(record, principals, role) for role in ROLES)
    ]
    found.sort(key=lambda r: (r.start_time, r.action_id))
    return found[:100]


def measure(others: int, calls: int) -> dict[str, object]:
    app = create_app({**BENCH_CONFIG, "MEMORY_STORE_CAPACITY": others + 1_000,
                      "MAX_LIVE_ACTIONS": 0})
    store: MemoryStore = app.extensions["store"]
    service = app.extensions["actions"]
    now = datetime.now(UTC)
    users = [f"urn:globus:auth:identity:{uuid.uuid4()}" for _ in range(100)]
    for i in range(others):
        creator = users[i % len(users)]
        store.create(ActionRecord(
            action_id=str(uuid.uuid4()), creator_id=creator, request_id=f"other-{i}",
            fingerprint=b"\0" * 16, start_time=now,
            estimated_completion_time=now + timedelta(days=1),
            release_after=timedelta(days=30), result=now.isoformat(),
            monitor_by=(creator,), manage_by=(creator,),
        ), now)
    her = callers(app, 1)[0]
    for i in range(3):
        service.run(ActionRequest(request_id=f"hers-{i}", body={"utc_offset": 1}), her)
    gc.collect()
    principals, roles = frozenset(her.principals), frozenset(ROLES)
    assert len(store.enumerate(principals, roles, STATUSES, now, 100)) == 3
    return {
        "others": others,
        "store_enumerate": timed(calls, lambda: store.enumerate(
            principals, roles, STATUSES, datetime.now(UTC), 100)),
        "service_enumerate": timed(calls, lambda: service.enumerate(
            her, frozenset({"creator_id"}), STATUSES, 100)),
        "scan_before_the_index": timed(max(3, calls // 1000) if others > 100_000 else calls,
                                       lambda: scan(store, principals, datetime.now(UTC))),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--others", type=int, nargs="+", default=[1_000, 1_000_000])
    parser.add_argument("--calls", type=int, default=2_000)
    args = parser.parse_args()
    for others in args.others:
        print(json.dumps(measure(others, args.calls)), flush=True)
        gc.collect()


if __name__ == "__main__":
    main()
