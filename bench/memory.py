"""Bytes per stored action in the memory store.

Run in a fresh process: ``python -m bench.memory [--count N] [--tracemalloc]
[--record typical|largest] [--via service|store]``.
Stores 1,000 actions (warm-up), then ``--count`` more, and prints one JSON
line: the growth of the process's resident set size (RSS, /proc/self/statm)
divided by the count, or with --tracemalloc the growth of Python-allocated
bytes (tracemalloc) instead.

``--record typical``: a run request with a body only (monitor_by and
manage_by default to the caller), round-robin over 100 dev users.
``--record largest``: the largest action the per-request bounds allow:
64 monitor_by and 64 manage_by principals, each new (no action shares
one: nothing is shared), a 64-character label and a request_id of
MAX_REQUEST_ID_LENGTH characters, all 4-byte characters.
``--via service`` (default): through the real ActionService, as a run
request is stored. ``--via store``: records put straight into a MemoryStore
(no service, no caches of the service's).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from globus_action_provider_tools.data_types import ActionRequest

from app import create_app
from app.defaults import MAX_REQUEST_ID_LENGTH
from app.store import ActionRecord, MemoryStore
from bench.fill import BENCH_CONFIG, callers, fill

WARMUP = 1_000
MAX_PRINCIPALS = 64  # each of monitor_by and manage_by (the per-request bound)
LABEL = "\U0001f570" * 64  # the spec's longest label, of 4-byte characters


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def principals(kind: str) -> list[str]:
    """MAX_PRINCIPALS principal URNs, new ones each call (as every request
    brings its own)."""
    return [f"urn:globus:{kind}:{uuid.uuid4()}" for _ in range(MAX_PRINCIPALS)]


def longest_request_id(i: int) -> str:
    tag = str(i)
    return tag + "\U0001f570" * (MAX_REQUEST_ID_LENGTH - len(tag))


def largest_requests(first: int, count: int, tag: str) -> list[ActionRequest]:
    return [
        ActionRequest(
            request_id=longest_request_id(i) if tag == "measure" else f"{tag}-{i}",
            body={"utc_offset": 5.5}, label=LABEL,
            monitor_by=principals("auth:identity"), manage_by=principals("groups:id"),
        )
        for i in range(first, first + count)
    ]


def via_service(record_kind: str) -> Callable[[int, str], object]:
    app = create_app({**BENCH_CONFIG, "MEMORY_STORE_CAPACITY": 10_000_000,
                      "MAX_LIVE_ACTIONS": 0})
    if record_kind == "typical":
        return lambda count, tag: fill(app, count, tag=tag)
    service, caller = app.extensions["actions"], callers(app, 1)[0]

    def store_largest(count: int, tag: str) -> None:
        for start in range(0, count, 1_000):  # requests built a batch at a time
            for request in largest_requests(start, min(1_000, count - start), tag):
                service.run(request, caller)

    return store_largest


def via_store(record_kind: str) -> Callable[[int, str], object]:
    store = MemoryStore(capacity=10_000_000)
    now = datetime.now(UTC)
    users = [f"urn:globus:auth:identity:{uuid.uuid4()}" for _ in range(100)]

    def record(i: int, tag: str) -> ActionRecord:
        creator = users[i % len(users)]
        largest = record_kind == "largest"
        return ActionRecord(
            action_id=str(uuid.uuid4()),
            creator_id=creator,
            request_id=longest_request_id(i) if largest else f"{tag}-{i}",
            fingerprint=os.urandom(16),
            start_time=now,
            estimated_completion_time=now + timedelta(days=1),
            release_after=timedelta(days=30),
            result=now.isoformat(),
            monitor_by=tuple(principals("auth:identity")) if largest else (creator,),
            manage_by=tuple(principals("groups:id")) if largest else (creator,),
            label=LABEL if largest else None,
        )

    def put(count: int, tag: str) -> None:
        for i in range(count):
            store.create(record(i, tag), now)

    return put


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--record", choices=("typical", "largest"), default="typical")
    parser.add_argument("--via", choices=("service", "store"), default="service")
    args = parser.parse_args()
    put = (via_service if args.via == "service" else via_store)(args.record)
    put(WARMUP, "warm")
    gc.collect()
    if args.tracemalloc:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = rss_bytes()
    put(args.count, "measure")
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] if args.tracemalloc else rss_bytes()
    print(json.dumps({
        "method": "tracemalloc" if args.tracemalloc else "rss",
        "record": args.record,
        "via": args.via,
        "count": args.count,
        "bytes_per_action": round((after - before) / args.count),
    }))


if __name__ == "__main__":
    main()
