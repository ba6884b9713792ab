"""Bytes per stored action in the memory store.

Run in a fresh process: ``python -m bench.memory [--count N] [--tracemalloc]``.
Stores 1,000 actions (warm-up), then ``--count`` more through ActionService
(round-robin over 100 dev users), and prints one JSON line: the growth of the
process's resident set size (RSS, /proc/self/statm) divided by the count, or
with --tracemalloc the growth of Python-allocated bytes (tracemalloc) instead.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tracemalloc

from app import create_app
from bench.fill import BENCH_CONFIG, fill

WARMUP = 1_000


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args()
    app = create_app(BENCH_CONFIG)
    fill(app, WARMUP, tag="warm")
    gc.collect()
    if args.tracemalloc:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = rss_bytes()
    fill(app, args.count, tag="measure")
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] if args.tracemalloc else rss_bytes()
    stored = len(app.extensions["store"])
    print(json.dumps({
        "method": "tracemalloc" if args.tracemalloc else "rss",
        "count": args.count,
        "stored": stored,
        "bytes_per_action": round((after - before) / args.count),
    }))


if __name__ == "__main__":
    main()
