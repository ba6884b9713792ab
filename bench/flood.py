"""Fair use (issue 21): one identity floods POST /run while another polls her
action's status.

    .venv/bin/python -m bench.flood                      # HEAD, memory and PostgreSQL, 60 s
    .venv/bin/python -m bench.flood --rounds 3           # 3 rounds, medians (about 10 min)
    .venv/bin/python -m bench.flood --ref main --store memory --seconds 10
    .venv/bin/python -m bench.flood --store memory --env FLASK_LOG_REQUESTS=false

The commit (--ref) is served as a user serves it (bench/sides.py: its own
worktree, venv and install, its production start command and defaults), dev
auth, on each store (memory; a fresh PostgreSQL schema). For each store:

1. her action: ``dev-token-her`` runs one action; the flooder is
   ``dev-token-flooder``; WARM_UP status polls of hers warm the server (few:
   she stays within her GET rate, GET_RATE_LIMIT, for the whole bench);
2. quiet: she polls her status (GET /<id>/status, one keep-alive connection,
   --poll-rate a second) for --quiet-seconds, alone: p50/p99/max;
3. flood: ``wrk -t1 -c8 -d<seconds>s`` POSTs /run with fresh request_ids as
   the flooder (every status counted; the action_id of every 2xx kept) while
   she polls as before; the server's RSS (whole process tree) before and
   after;
4. nothing acknowledged lost: every action the flooder got a 2xx for, and
   hers, still answers its status (200) afterwards (--verify-sample N: N of
   them at random; a 429 of the flooder's GET rate is waited out, Retry-After,
   and asked again).

The flooder is one identity on purpose: the service's per-identity limits
(RUN_RATE_LIMIT, MAX_LIVE_ACTIONS) must refuse her with 429s, and the other
caller must not notice; the flooder's statuses are counted apiece.

Target (issue 21): her p99 during the flood <= max(5 x her p99 without it,
10 ms). Her latencies are measured by a Python client (requests), so they
include ~0.3 ms of client time on both sides of the comparison. Prints a
Markdown table; writes bench/results/flood-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests

from bench.load import Measure, Request, require_wrk, run_wrk
from bench.sides import RESULTS, ROOT, START_KINDS, Server, SideError, prepare, serve_side
from tests.postgres import temporary_schema
from tests.redis_server import RedisServer

PG_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
HER, FLOODER = "dev-token-her", "dev-token-flooder"
WARM_UP = 200  # her status polls before the quiet ones
RETRIES_429 = 20  # times a 429 is waited out in verify()
RUN_BODY = '{"request_id":"%s","body":{"utc_offset":5.5}}'


def start_action(url: str, token: str) -> str:
    response = requests.post(url + "/run", timeout=30,
                             json={"request_id": f"her-{uuid.uuid4()}",
                                   "body": {"utc_offset": 1}},
                             headers={"Authorization": f"Bearer {token}"})
    response.raise_for_status()
    return str(response.json()["action_id"])


def poll(url: str, action_id: str, rate: float, stop: threading.Event,
         seconds: float | None = None, count: int | None = None) -> dict[str, Any]:
    """GET her status ``rate`` times a second on one keep-alive connection,
    until ``stop`` is set (or ``seconds`` have passed, or ``count`` polls
    were made); latencies in ms."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {HER}"
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    started = next_at = time.monotonic()
    while not stop.is_set() and (seconds is None or time.monotonic() - started < seconds) \
            and (count is None or len(latencies) < count):
        t0 = time.perf_counter()
        try:
            status = str(session.get(f"{url}/{action_id}/status", timeout=30).status_code)
        except requests.RequestException as error:
            status = type(error).__name__
        latencies.append((time.perf_counter() - t0) * 1000)
        statuses[status] = statuses.get(status, 0) + 1
        next_at += 1 / rate
        time.sleep(max(0.0, next_at - time.monotonic()))
    session.close()
    return latency_summary(latencies) | {"statuses": statuses}


def latency_summary(ms: list[float]) -> dict[str, Any]:
    if len(ms) < 2:
        return {"polls": len(ms), "p50_ms": None, "p99_ms": None, "max_ms": None}
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {"polls": len(ms), "p50_ms": round(cuts[49], 2), "p99_ms": round(cuts[98], 2),
            "max_ms": round(max(ms), 2)}


def verify(url: str, ids: list[str], token: str) -> dict[str, Any]:
    """GET the status of every action in ``ids``; how many answered 200."""
    local = threading.local()

    def one(action_id: str) -> int:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers["Authorization"] = f"Bearer {token}"
        for _ in range(RETRIES_429):
            try:
                answer = local.session.get(f"{url}/{action_id}/status", timeout=30)
            except requests.RequestException:
                return 0
            if answer.status_code != 429:
                return answer.status_code
            time.sleep(min(60.0, float(answer.headers.get("Retry-After") or 1)))
        return 429

    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(one, ids))
    counts: dict[str, int] = {}
    for code in codes:
        counts[str(code)] = counts.get(str(code), 0) + 1
    return {"checked": len(ids), "answered_200": counts.get("200", 0), "statuses": counts}


def flood_store(store: str, args: argparse.Namespace, wrk_bin: str) -> dict[str, Any]:
    side = prepare("flood", args.ref, args.start)
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-flood-")))
        store_url = ("memory://" if store == "memory" else
                     stack.enter_context(temporary_schema(args.pg_url, "bench_flood")))
        env = {"FLASK_AUTH_MODE": "dev", "FLASK_STORE_URL": store_url,
               "FLASK_MIN_DELAY_SECONDS": "86400", "FLASK_MAX_DELAY_SECONDS": "172800"}
        if store != "memory":
            # Served by several workers, whose rates must be counted in one
            # place (the launcher refuses per-process counts): a Redis of its own.
            redis = RedisServer(Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="bench-redis-"))))
            redis.start()
            stack.callback(redis.stop)
            env["FLASK_RATE_LIMIT_STORAGE_URL"] = redis.url
        env.update(args.env)
        server: Server = stack.enter_context(serve_side(side, env, args.side_args))
        print(f"\n== {store}: {side.ref} ({side.sha[:12]}, {side.start}): "
              f"{' '.join(server.command)} ({server.processes()} processes)", flush=True)
        hers = start_action(server.url, HER)
        warm_up = poll(server.url, hers, 1000, threading.Event(), count=WARM_UP)
        if set(warm_up["statuses"]) != {"200"}:
            raise SideError(f"her warm-up polls answered {warm_up['statuses']}")
        quiet = poll(server.url, hers, args.poll_rate, threading.Event(), args.quiet_seconds)
        print(f"  quiet: her status p50 {quiet['p50_ms']} ms, p99 {quiet['p99_ms']} ms "
              f"({quiet['polls']} polls)", flush=True)
        rss_before = server.rss_bytes()
        flood: dict[str, Any] = {}

        stop = threading.Event()

        def flooder() -> None:
            try:
                flood["m"] = run_wrk(wrk_bin, server.url, Request("POST", "/run", RUN_BODY),
                                     token=FLOODER, seconds=args.seconds, connections=8,
                                     ids_prefix=str(tmp / "ids-"))
            except Exception as error:  # reported below, after her polls stop
                flood["error"] = error  # type: ignore[assignment]
            finally:
                stop.set()

        thread = threading.Thread(target=flooder, daemon=True)
        cpu_before = server.cpu_seconds()
        thread.start()
        during = poll(server.url, hers, args.poll_rate, stop)
        thread.join()
        if "m" not in flood:
            raise SideError(f"the flood's wrk run failed: {flood.get('error')}")
        m: Measure = flood["m"]
        cpu = server.cpu_seconds() - cpu_before
        rss_after = server.rss_bytes()
        ids = [line for path in tmp.glob("ids-*") for line in path.read_text().split()]
        acked = sum(n for k, n in m.statuses.items() if 200 <= int(k) < 300)
        print(f"  flood: {m.requests:,} requests, statuses {m.statuses}, "
              f"{m.errors} socket errors; her status p50 {during['p50_ms']} ms, "
              f"p99 {during['p99_ms']} ms, max {during['max_ms']} ms "
              f"({during['polls']} polls, {during['statuses']}); RSS "
              f"{rss_before / 2**20:.0f} -> {rss_after / 2**20:.0f} MiB", flush=True)
        sample = ids if args.verify_sample is None else random.sample(
            ids, min(args.verify_sample, len(ids)))
        checked = verify(server.url, sample, FLOODER)
        hers_after = verify(server.url, [hers], HER)
        print(f"  after: {checked['answered_200']:,} of {checked['checked']:,} acknowledged "
              f"actions answer 200; hers: {hers_after['statuses']}", flush=True)
        limit = max(5 * quiet["p99_ms"], 10.0) if quiet["p99_ms"] is not None else None
        return {
            "server": {**side.describe(), "command": " ".join(server.command),
                       "processes": server.processes()},
            "quiet": quiet, "during": during,
            "flood": {**m.as_dict(), "acknowledged": acked, "ids_recorded": len(ids),
                      "cpu_us_per_request": round(cpu / max(1, m.requests) * 1e6)},
            "rss_before": rss_before, "rss_after": rss_after,
            "rss_bytes_per_acknowledged": round((rss_after - rss_before) / acked) if acked
            else None,
            "verified": checked, "hers_after": hers_after,
            "target_p99_ms": limit,
            "target_met": (during["p99_ms"] is not None and limit is not None
                           and during["p99_ms"] <= limit),
            "nothing_lost": (checked["answered_200"] == checked["checked"]
                             and hers_after["answered_200"] == 1),
        }


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The medians of a store's rounds; the target is judged on them: the
    median flood p99 against max(5 x the median quiet p99, 10 ms)."""
    quiet = round(statistics.median(r["quiet"]["p99_ms"] for r in rounds), 2)
    during = round(statistics.median(r["during"]["p99_ms"] for r in rounds), 2)
    limit = max(5 * quiet, 10.0)
    return {"quiet_p99_ms": quiet, "during_p99_ms": during, "target_p99_ms": limit,
            "target_met": during <= limit,
            "nothing_lost": all(r["nothing_lost"] for r in rounds)}


def print_table(results: dict[str, Any]) -> None:
    settings = results["settings"]
    print(f"\n### Flood: wrk -t1 -c8 -d{settings['seconds']}s POST /run (one identity) while "
          f"another polls her status at {settings['poll_rate']}/s; {settings['rounds']} "
          f"round(s), stores interleaved (load {results['machine']['loadavg'][0]:.2f} before)\n")
    print("| store, round | flooder statuses | socket errors | RSS before → after (MiB) | "
          "bytes/acked action | her p50 / p99 / max quiet (ms) | her p50 / p99 / max "
          "flood (ms) | p99 target | acked still answered |")
    print("|---|---|---:|---|---:|---|---|---|---|")
    for store, rounds in results["stores"].items():
        for n, r in enumerate(rounds, 1):
            q, d, f = r["quiet"], r["during"], r["flood"]
            target = f"≤ {r['target_p99_ms']:.1f}: {'met' if r['target_met'] else 'NOT met'}"
            print(f"| {store} {n} | {', '.join(f'{k}: {v:,}' for k, v in f['statuses'].items())}"
                  f" | {f['errors']} | {r['rss_before'] / 2**20:.0f} → "
                  f"{r['rss_after'] / 2**20:.0f} | {r['rss_bytes_per_acknowledged']} | "
                  f"{q['p50_ms']} / {q['p99_ms']} / {q['max_ms']} | {d['p50_ms']} / "
                  f"{d['p99_ms']} / {d['max_ms']} | {target} | "
                  f"{r['verified']['answered_200']:,} of {r['verified']['checked']:,}"
                  f"{'' if r['nothing_lost'] else ' (LOST)'} |")
        m = results["medians"][store]
        print(f"| **{store}, median** | | | | | p99 {m['quiet_p99_ms']} | p99 "
              f"{m['during_p99_ms']} | ≤ {m['target_p99_ms']:.1f}: "
              f"**{'met' if m['target_met'] else 'NOT met'}** | "
              f"{'all' if m['nothing_lost'] else 'LOST some'} |")


def _name_value(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not name or not equals:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flood", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", default="HEAD", help="the commit to serve (HEAD)")
    parser.add_argument("--start", choices=("auto", *START_KINDS), default="auto")
    parser.add_argument("--args", default="", help="extra arguments for its start command")
    parser.add_argument("--store", action="append", choices=("memory", "postgresql"))
    parser.add_argument("--env", metavar="NAME=VALUE", action="append", default=[],
                        type=_name_value,
                        help="a variable for the server, e.g. FLASK_LOG_REQUESTS=false")
    parser.add_argument("--seconds", type=int, default=60, help="the flood's length (60)")
    parser.add_argument("--quiet-seconds", type=float, default=20,
                        help="her polls without the flood (20)")
    parser.add_argument("--poll-rate", type=float, default=20, help="her polls a second (20)")
    parser.add_argument("--verify-sample", type=int, default=None,
                        help="check N acknowledged actions at random (default: every one)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds, the stores in turn in each; medians judged (1)")
    parser.add_argument("--pg-url", default=PG_URL)
    args = parser.parse_args(argv)
    args.side_args = shlex.split(args.args)
    args.env = dict(args.env)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    wrk_bin = require_wrk()
    stores = args.store or ["memory", "postgresql"]
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        "settings": {"seconds": args.seconds, "quiet_seconds": args.quiet_seconds,
                     "poll_rate": args.poll_rate, "ref": args.ref, "args": args.side_args,
                     "env": args.env, "rounds": args.rounds},
        "stores": {store: [] for store in stores},
        "medians": {},
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"flood-{time.strftime('%Y%m%d-%H%M%S')}.json"
    failed = False
    for _ in range(args.rounds):
        for store in stores:
            try:
                results["stores"][store].append(flood_store(store, args, wrk_bin))
            except SideError as error:
                print(f"\n{store}: FAILED\n{error}", flush=True)
                results.setdefault("failed", {})[store] = str(error)
                failed = True
            out.write_text(json.dumps(results, indent=2))
    results["stores"] = {store: r for store, r in results["stores"].items() if r}
    results["medians"] = {store: summarize(r) for store, r in results["stores"].items()}
    out.write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"\nwritten to {out.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
