"""Two commits' production defaults side by side (issue 19's targets).

    .venv/bin/python -m bench.ab --old 6e7b116 --new HEAD            # 5 rounds of 5 s
    .venv/bin/python -m bench.ab --old 6e7b116 --new HEAD --variant memory --quick

The default run (memory, memory-close, postgresql, library; 5 rounds of 5 s,
1,000 identities) takes about 3 minutes a variant, 12 to 13 in all (more the
first time: each side's venv is built).

Each side (bench/sides.py) is its commit's own worktree, venv (from its
requirements.txt) and non-editable install, started as a user starts it:
``gunicorn -c python:app.gunicorn_conf 'app:create_app()'`` where the commit
has app/gunicorn_conf.py, else ``python -m app --host 127.0.0.1 --port P``;
workers and threads are what each chooses by itself for the store.

Variants (--variant, repeatable; default memory, memory-close, postgresql,
library):
  memory            memory store, dev auth, wrk -t1 -c4, keep-alive
  memory-close      the same with "Connection: close" on every request
  postgresql        a fresh PostgreSQL schema per side, dev auth, wrk -c8
  postgresql-close  the same with "Connection: close"
  library           tests/library_provider.py (the library's blueprint, its
                    real auth path) under the NEW side's own server and
                    settings, against the new side; both with production
                    auth against a loopback Globus Auth (tokens cached)
  library-close     the same with "Connection: close"

Many callers (--identities, 1,000): production's traffic comes from many
users, and the service limits each identity's request rates and live
actions, so the load is spread over N tokens used in turn, each its own
identity: dev-token-bench-<i> (dev auth) or cached-token-bench-<i> (the
loopback Auth: every token active, its own identity). Both sides get the
same load (one that has no limits all the same).

Scenarios: introspect (GET /, token i), status (GET /<id i>/status with
token i: before the rounds each identity runs one action, N runs a
server), run (POST /run, token i, a fresh request_id each time). Rounds
interleave the two sides scenario by scenario (old then new, then new then
old the next round). Each wrk run also reads the server's process tree CPU
(utime + stime, /proc) and divides it by the requests answered, and wrk's
own CPU (it must stay well below a core). A ratio counts only if both sides
answered nothing but 2xx, with no socket errors.

Production settings kept, but two that a bench that never releases would
otherwise hit, given only to a side whose config.py has them:
FLASK_MEMORY_STORE_CAPACITY (BENCH_CAPACITY: every run is kept, a day
active) and, on PostgreSQL, FLASK_RATE_LIMIT_STORAGE_URL: a Redis of the
bench's own, as production with several workers needs (the rates counted
once for every worker). The live actions each identity holds at the end
are printed beside MAX_LIVE_ACTIONS. The library's introspection cache is
sized like the service's (INTROSPECT_CACHE_SIZE and _TTL_SECONDS of the new
side's config.py; the library's own 100 would miss for nearly every one of
the N tokens).

Prints per-round lines, a Markdown table per variant and the targets met or
not; writes everything to bench/results/ab-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests

from bench.load import Measure, Request, require_wrk, run_wrk
from bench.sides import (
    RESULTS,
    ROOT,
    START_KINDS,
    Server,
    Side,
    SideError,
    prepare,
    remove_all,
    serve_side,
)
from tests.loopback_auth import loopback_auth, production_auth_env
from tests.postgres import conninfo, temporary_schema
from tests.redis_server import RedisServer

SCENARIOS = ("introspect", "status", "run")
PG_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TOKEN_PREFIXES = {"dev": "dev-token-bench", "globus": "cached-token-bench"}
IDENTITIES = 1000
# The memory store's capacity on a side that has the setting: the bench keeps
# every action it runs (about 130,000 a side and variant at 5,000 runs a second).
BENCH_CAPACITY = 2_000_000
RUN_BODIES = {
    "service": '{"request_id":"%s","body":{"utc_offset":5.5}}',
    "library": '{"request_id":"%s","body":{"echo_string":"hello"}}',
}
SHIM = ROOT / "bench" / "library_shim"
LIBRARY_TITLE = "Echo, the library's way"  # tests/library_provider.py
MIN_ROUNDS = 5  # fewer: the figures are printed, but no target is called met


@dataclass(frozen=True)
class Variant:
    name: str
    store: str  # memory | postgresql
    auth: str  # dev | globus
    connections: int
    close: bool = False
    library: bool = False  # the baseline is the library's blueprint, not the old side
    # issue 19's targets: new / baseline, per scenario (keep-alive variants)
    targets: dict[str, float] = field(default_factory=dict)

    @property
    def labels(self) -> tuple[str, str]:
        return ("library", "new") if self.library else ("old", "new")


VARIANTS = {v.name: v for v in (
    Variant("memory", "memory", "dev", 4,
            targets={"introspect": 1.5, "status": 1.5, "run": 1.4}),
    Variant("memory-close", "memory", "dev", 4, close=True),
    Variant("postgresql", "postgresql", "dev", 8, targets={"status": 1.3, "run": 1.3}),
    Variant("postgresql-close", "postgresql", "dev", 8, close=True),
    Variant("library", "memory", "globus", 4, library=True,
            targets={"status": 1.1, "run": 1.1}),
    Variant("library-close", "memory", "globus", 4, close=True, library=True),
)}
DEFAULT_VARIANTS = ("memory", "memory-close", "postgresql", "library")


@dataclass
class Contender:
    """One server of a variant: a side, serving the service or the library's app."""

    label: str
    side: Side
    app: str  # service | library
    server: Server
    tokens: list[str]
    action_ids: list[str]  # action i is token i's, for the status scenario
    rounds: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # the settings given to it
    runs_acknowledged: int = 0  # 2xx answers to runs, warm-up included


def tokens_for(variant: Variant, identities: int) -> list[str]:
    return [f"{TOKEN_PREFIXES[variant.auth]}-{i}" for i in range(identities)]


def request_for(scenario: str, c: Contender) -> Request:
    if scenario == "introspect":
        return Request("GET", "/")
    if scenario == "status":
        return Request("GET", paths=tuple(f"/{a}/status" for a in c.action_ids))
    return Request("POST", "/run", RUN_BODIES[c.app])


def start_actions(url: str, app: str, tokens: list[str]) -> list[str]:
    """One action per token for the status scenario, created before the rounds."""
    ids = []
    with requests.Session() as session:
        for token in tokens:
            body = json.loads(RUN_BODIES[app] % f"bench-ab-{uuid.uuid4()}")
            response = session.post(url + "/run", json=body, timeout=30,
                                    headers={"Authorization": f"Bearer {token}"})
            if response.status_code not in (200, 201, 202):
                raise SideError(f"POST /run before the rounds ({len(ids)} done): "
                                f"{response.status_code} {response.text}")
            ids.append(str(response.json()["action_id"]))
    return ids


def measure(wrk_bin: str, c: Contender, scenario: str, variant: Variant,
            seconds: float) -> dict[str, Any]:
    cpu_before = c.server.cpu_seconds()
    m: Measure = run_wrk(wrk_bin, c.server.url, request_for(scenario, c),
                         token=c.tokens, seconds=seconds,
                         connections=variant.connections, close=variant.close)
    cpu = c.server.cpu_seconds() - cpu_before
    if scenario == "run":
        c.runs_acknowledged += sum(n for k, n in m.statuses.items() if 200 <= int(k) < 300)
    if c.server.process.poll() is not None:
        raise SideError(f"the {c.label} side ({c.side.ref}) exited with "
                        f"{c.server.process.returncode} during {scenario}:\n"
                        f"{c.server.output_text()}")
    return {**m.as_dict(), "cpu_us": cpu / max(1, m.requests) * 1e6}


def ratio(new: float, base: float) -> float:
    return new / base if base else float("inf")


def bench_variant(variant: Variant, sides: dict[str, Side], args: argparse.Namespace,
                  wrk_bin: str, auth_url: str | None) -> dict[str, Any]:
    pairs = ([("library", sides["new"], "library"), ("new", sides["new"], "service")]
             if variant.library else
             [("old", sides["old"], "service"), ("new", sides["new"], "service")])
    scenarios = list(args.scenario)
    env = {"FLASK_MIN_DELAY_SECONDS": "86400", "FLASK_MAX_DELAY_SECONDS": "172800"}
    if variant.auth == "dev":
        env["FLASK_AUTH_MODE"] = "dev"
    else:
        assert auth_url is not None
        env.update(production_auth_env(auth_url))
    tokens = tokens_for(variant, args.identities)
    load_before = os.getloadavg()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ab-")))
        redis_url = None
        contenders: list[Contender] = []
        for label, side, app in pairs:
            side_env = dict(env)
            if variant.store == "memory":
                side_env["FLASK_STORE_URL"] = "memory://"
                if side.setting("MEMORY_STORE_CAPACITY") is not None:
                    side_env["FLASK_MEMORY_STORE_CAPACITY"] = str(BENCH_CAPACITY)
            else:
                side_env["FLASK_STORE_URL"] = stack.enter_context(
                    temporary_schema(args.pg_url, f"bench_ab_{label}"))
                if side.setting("RATE_LIMIT_STORAGE_URL") is not None:
                    redis_url = redis_url or start_redis(stack)
                    side_env["FLASK_RATE_LIMIT_STORAGE_URL"] = redis_url
            python_path: list[Path] = []
            if app == "library":
                python_path.append(library_shim(tmp))
                side_env["BENCH_LIBRARY_RECORD"] = str(tmp / "library-server.json")
                side_env.update(library_cache_env(side))
            try:
                server = stack.enter_context(serve_side(
                    side, side_env, args.side_args[side.label], python_path))
                if app == "library":
                    check_library(server.url, tmp / "library-server.json", tokens[0])
                action_ids = start_actions(server.url, app, tokens)
            except SideError as error:
                raise SideError(f"{variant.name}: the {label} side ({side.ref}, "
                                f"{side.start}) did not start:\n{error}") from None
            contenders.append(Contender(label, side, app, server, tokens, action_ids,
                                        {s: [] for s in scenarios}, side_env))
        print(f"\n== {variant.name}: " + "; ".join(
            f"{c.label} = {c.side.ref} ({c.app}, {c.side.start}, "
            f"{c.server.processes()} processes)" for c in contenders)
            + f"; {len(tokens):,} identities", flush=True)
        for c in contenders:  # warm-up: code paths, token caches, connections
            for s in scenarios:
                measure(wrk_bin, c, s, variant, 1)
        for round_no in range(args.rounds):
            order = contenders if round_no % 2 == 0 else contenders[::-1]
            for s in scenarios:
                row = {}
                for c in order:
                    m = measure(wrk_bin, c, s, variant, args.duration)
                    c.rounds[s].append(m)
                    row[c.label] = m
                base, new = (row[label] for label in variant.labels)
                print(f"  round {round_no + 1} {s:>10}: " + ", ".join(
                    f"{label} {row[label]['rps']:,.0f}/s ({row[label]['cpu_us']:.0f} us CPU, "
                    f"{row[label]['non_2xx']} non-2xx, {row[label]['errors']} socket errors, "
                    f"wrk {row[label]['wrk_cpu_pct']:.0f}% CPU)"
                    for label in variant.labels)
                    + f"; {ratio(new['rps'], base['rps']):.2f}x", flush=True)
        print_rates(contenders, len(tokens))
        live = live_actions(contenders, len(tokens))
        for label, v in live.items():
            print(f"  {label}: {v['stored']:,} actions stored ({v['runs_acknowledged']:,} runs "
                  f"+ {len(tokens):,} for status), at most {v['per_identity_max']:,} live per "
                  f"identity (MAX_LIVE_ACTIONS {v['max_live_actions'] or 'none'}"
                  + (f"; MEMORY_STORE_CAPACITY {v['capacity']:,}" if v["capacity"] else "")
                  + ")", flush=True)
        out = {
            "settings": {"store": variant.store, "auth": variant.auth,
                         "wrk": f"-t1 -c{variant.connections} -d{args.duration}s",
                         "connection": "close" if variant.close else "keep-alive",
                         "rounds": args.rounds, "baseline": variant.labels[0],
                         "identities": len(tokens)},
            "servers": {c.label: {**c.side.describe(), "app": c.app,
                                  "command": " ".join(c.server.command),
                                  "processes": c.server.processes(),
                                  "rss_mib_after": round(c.server.rss_bytes() / 2**20, 1),
                                  "started_seconds": c.server.started_seconds,
                                  "settings": {k: v for k, v in c.env.items()
                                               if "SECRET" not in k}}
                        for c in contenders},
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
            "live_actions": live,
        }
        record = tmp / "library-server.json"
        if record.exists():
            out["servers"]["library"]["server_settings"] = json.loads(record.read_text())
        out["scenarios"] = summarize(variant, contenders, scenarios, args.rounds)
    return out


def start_redis(stack: ExitStack) -> str:
    """A Redis of the bench's own (Debian's redis-server, nothing saved), for
    the rate counts of a side served by several workers; its URL."""
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ab-redis-")))
    redis = RedisServer(folder)
    redis.start()
    stack.callback(redis.stop)
    return redis.url


def print_rates(contenders: list[Contender], identities: int) -> None:
    """Each identity's request rate at the highest rate measured, were it kept
    up for a whole minute, beside the side's per-identity limits (a run is
    always far shorter: far below them means no 429 from the limits)."""
    for c in contenders:
        if c.app != "service":
            continue
        peak = {s: max((r["rps"] for r in rows), default=0.0) for s, rows in c.rounds.items()}
        run = peak.get("run", 0.0) * 60 / identities
        get = max(peak.get("introspect", 0.0), peak.get("status", 0.0)) * 60 / identities
        print(f"  {c.label}: per identity at the peak rates, for a whole minute: "
              f"{run:,.0f} runs/minute (RUN_RATE_LIMIT "
              f"{c.side.setting('RUN_RATE_LIMIT') or 'none'}), {get:,.0f} GETs/minute "
              f"(GET_RATE_LIMIT {c.side.setting('GET_RATE_LIMIT') or 'none'})", flush=True)


def live_actions(contenders: list[Contender], identities: int) -> dict[str, dict[str, Any]]:
    """What each service side stores at the end: every run acknowledged is
    still live (active for a day, never released), spread evenly over the
    identities (token i mod N), plus each identity's status action."""
    out = {}
    for c in contenders:
        if c.app != "service":
            continue
        capacity = c.env.get("FLASK_MEMORY_STORE_CAPACITY")
        out[c.label] = {
            "runs_acknowledged": c.runs_acknowledged,
            "stored": c.runs_acknowledged + identities,
            "per_identity_max": math.ceil(c.runs_acknowledged / identities) + 1,
            "max_live_actions": c.side.setting("MAX_LIVE_ACTIONS"),
            "capacity": int(capacity) if capacity else None,
        }
    return out


def library_cache_env(side: Side) -> dict[str, str]:
    """The library's introspection cache sized like the service's (its defaults
    in the side's config.py): bench/library_shim/bench_library_app.py."""
    size, ttl = (side.setting(f"INTROSPECT_CACHE_{x}") for x in ("SIZE", "TTL_SECONDS"))
    if size is None or ttl is None:
        return {}
    return {"BENCH_LIBRARY_INTROSPECT_CACHE_SIZE": str(size),
            "BENCH_LIBRARY_INTROSPECT_CACHE_TTL": str(ttl)}


def check_library(url: str, record: Path, token: str) -> None:
    """The shim took effect: the side's server serves the library's app."""
    answer = requests.get(url + "/", timeout=10,
                          headers={"Authorization": f"Bearer {token}"})
    try:
        title = answer.json().get("title")
    except ValueError:
        title = None
    if not record.exists() or title != LIBRARY_TITLE:
        raise SideError("bench/library_shim did not take effect (the side's server is neither "
                        "granian nor gunicorn?): GET / answered "
                        f"{answer.status_code} {answer.text[:200]}")


def library_shim(tmp: Path) -> Path:
    """bench/library_shim with tests/library_provider.py beside it, in ``tmp``."""
    folder = tmp / "library-shim"
    folder.mkdir()
    for path in SHIM.glob("*.py"):
        shutil.copy(path, folder / path.name)
    shutil.copy(ROOT / "tests" / "library_provider.py", folder / "library_provider.py")
    return folder


def status_totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for r in rows:
        for status, n in r["statuses"].items():
            totals[status] = totals.get(status, 0) + n
    return dict(sorted(totals.items()))


def summarize(variant: Variant, contenders: list[Contender], scenarios: list[str],
              rounds: int) -> dict[str, Any]:
    med = statistics.median
    out: dict[str, Any] = {}
    by_label = {c.label: c for c in contenders}
    for s in scenarios:
        block: dict[str, Any] = {}
        for c in contenders:
            rows = c.rounds[s]
            block[c.label] = {
                "rps": round(med(r["rps"] for r in rows)),
                "rps_rounds": [round(r["rps"]) for r in rows],
                "p50_ms": round(med(r["p50_ms"] for r in rows), 2),
                "p99_ms": round(med(r["p99_ms"] for r in rows), 2),
                "cpu_us": round(med(r["cpu_us"] for r in rows)),
                "cpu_us_rounds": [round(r["cpu_us"]) for r in rows],
                "non_2xx": sum(r["non_2xx"] for r in rows),
                "socket_errors": sum(r["errors"] for r in rows),
                "statuses": status_totals(rows),
                "requests": sum(r["requests"] for r in rows),
            }
        base_label, new_label = variant.labels
        base, new = by_label[base_label].rounds[s], by_label[new_label].rounds[s]
        ratios = [ratio(n["rps"], b["rps"]) for b, n in zip(base, new, strict=True)]
        clean = all(block[label]["non_2xx"] == 0 and block[label]["socket_errors"] == 0
                    for label in variant.labels)
        target = variant.targets.get(s)
        median_ratio = round(med(ratios), 3)
        block["ratio"] = median_ratio if clean else None
        block["ratio_rounds"] = [round(r, 3) for r in ratios]
        block["ratio_of_medians"] = round(
            ratio(block[new_label]["rps"], block[base_label]["rps"]), 3)
        block["clean"] = clean
        block["target"] = target
        if target is not None:
            block["target_met"] = bool(clean and rounds >= MIN_ROUNDS and median_ratio >= target)
        out[s] = block
    return out


# --- output ---------------------------------------------------------------------------------
def print_tables(results: dict[str, Any]) -> None:
    for name, v in results["variants"].items():
        base, new = v["settings"]["baseline"], "new"
        servers = v["servers"]
        print(f"\n### {name}: {v['settings']['store']} store, {v['settings']['auth']} auth, "
              f"wrk {v['settings']['wrk']}, {v['settings']['connection']}, "
              f"{v['settings']['rounds']} rounds (load {v['loadavg_before'][0]:.2f} before)\n")
        for label in (base, new):
            s = servers[label]
            print(f"- {label}: {s['ref']} ({s['sha'][:12]}), {s['app']}: `{s['command']}` "
                  f"({s['processes']} processes)")
        if "server_settings" in servers.get("library", {}):
            st = servers["library"]["server_settings"]
            keys = ("server", "workers", "blocking_threads", "runtime_threads",
                    "worker_class", "threads")
            print("- library served with: " + ", ".join(
                f"{k} {st[k]}" for k in keys if k in st))
        print(f"\n| scenario | {base} req/s (rounds) | {new} req/s (rounds) | "
              f"{new}/{base} (rounds) | target | non-2xx {base}/{new} | "
              f"CPU µs/req {base}/{new} (rounds) |")
        print("|---|---:|---:|---:|---|---:|---:|")
        for scenario, b in v["scenarios"].items():
            cells = {label: f"{b[label]['rps']:,} ({', '.join(map(str, b[label]['rps_rounds']))})"
                     for label in (base, new)}
            ratio = (f"{b['ratio']:.2f} ({', '.join(f'{r:.2f}' for r in b['ratio_rounds'])})"
                     if b["ratio"] is not None else "not counted (non-2xx or socket errors)")
            target = "—"
            if b["target"] is not None:
                target = f"≥ {b['target']}: {'met' if b['target_met'] else 'NOT met'}"
            errors = "".join(f" +{b[x]['socket_errors']} socket errors" for x in (base, new)
                             if b[x]["socket_errors"])
            errors += "".join(f" ({x}: {non_2xx_statuses(b[x]['statuses'])})"
                              for x in (base, new) if b[x]["non_2xx"])
            cpu = (f"{b[base]['cpu_us']} / {b[new]['cpu_us']} "
                   f"({', '.join(map(str, b[base]['cpu_us_rounds']))} / "
                   f"{', '.join(map(str, b[new]['cpu_us_rounds']))})")
            print(f"| {scenario} | {cells[base]} | {cells[new]} | {ratio} | {target} | "
                  f"{b[base]['non_2xx']} / {b[new]['non_2xx']}{errors} | {cpu} |")


def print_targets(results: dict[str, Any]) -> None:
    """Issue 19's targets, one line each: the median ratio, met or not."""
    print(f"\n### Targets ({results['settings']['rounds']} rounds of "
          f"{results['settings']['duration_s']} s, {results['settings']['identities']:,} "
          "identities)\n")
    for name, v in results["variants"].items():
        base = v["settings"]["baseline"]
        for scenario, b in v["scenarios"].items():
            if b["target"] is None:
                continue
            if b["ratio"] is None:
                got = "not counted (non-2xx or socket errors)"
            else:
                got = f"{b['ratio']:.2f}x"
            verdict = "met" if b["target_met"] else "not met"
            if b["ratio"] is not None and not b["target_met"] and b["ratio"] >= b["target"]:
                verdict += f" (fewer than {MIN_ROUNDS} rounds)"
            print(f"- {name} {scenario}: new/{base} {got}, target >= {b['target']}: {verdict}")
    for name in results.get("failed", {}):
        print(f"- {name}: FAILED (no figures)")


def non_2xx_statuses(statuses: dict[str, int]) -> str:
    return ", ".join(f"{k}: {n}" for k, n in statuses.items() if not 200 <= int(k) < 300)


# --- main -----------------------------------------------------------------------------------
def check_postgres(url: str) -> None:
    try:
        with psycopg.connect(conninfo(url), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        raise SystemExit(f"PostgreSQL at {url} (--pg-url) not reachable: {error}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", default="6e7b116", help="git ref of the old side (6e7b116)")
    parser.add_argument("--new", default="HEAD", help="git ref of the new side (HEAD)")
    parser.add_argument("--variant", action="append", choices=tuple(VARIANTS),
                        help=f"repeatable; default: {', '.join(DEFAULT_VARIANTS)}")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS,
                        help="repeatable; default: all three")
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS,
                        help=f"interleaved rounds (default {MIN_ROUNDS}; targets need "
                        f"{MIN_ROUNDS})")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    parser.add_argument("--identities", type=int, default=IDENTITIES,
                        help=f"callers the load is spread over, one token each ({IDENTITIES:,})")
    parser.add_argument("--quick", action="store_true",
                        help="1 s runs, 2 rounds: to try the harness, not to measure")
    parser.add_argument("--old-start", choices=("auto", *START_KINDS), default="auto",
                        help="how the old side starts (auto: gunicorn if the commit has "
                        "app/gunicorn_conf.py, else python -m app)")
    parser.add_argument("--new-start", choices=("auto", *START_KINDS), default="auto")
    parser.add_argument("--old-args", default="", help="extra arguments for the old side's "
                        "start command, e.g. '--workers 2' (default: none, its own defaults)")
    parser.add_argument("--new-args", default="")
    parser.add_argument("--pg-url", default=PG_URL,
                        help="PostgreSQL for the postgresql variants (a schema per side, "
                        "dropped after); default $BENCH_POSTGRES_URL or " + PG_URL)
    parser.add_argument("--clean", action="store_true",
                        help="remove every worktree, venv and install under bench/build/, exit")
    args = parser.parse_args(argv)
    if args.identities < 1:
        parser.error("--identities: at least 1")
    if args.quick:
        args.duration, args.rounds = 1, 2
    args.variant = args.variant or list(DEFAULT_VARIANTS)
    args.scenario = args.scenario or list(SCENARIOS)
    args.side_args = {"old": shlex.split(args.old_args), "new": shlex.split(args.new_args)}
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.clean:
        remove_all()
        print("bench/build/ emptied")
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: servers stopped
    wrk_bin = require_wrk()
    variants = [VARIANTS[name] for name in args.variant]
    if any(v.store == "postgresql" for v in variants):
        check_postgres(args.pg_url)
    needed = {label for v in variants for label in v.labels}
    try:
        sides = {label: prepare(label, getattr(args, label), getattr(args, f"{label}_start"))
                 for label in ("old", "new") if label in needed}
    except SideError as error:
        raise SystemExit(f"preparing a side failed: {error}") from None
    for side in sides.values():
        print(f"{side.label}: {side.ref} = {side.sha[:12]}, starts with {side.start}: "
              f"{side.describe()['command']}", flush=True)
    if args.rounds < MIN_ROUNDS:
        print(f"note: {args.rounds} rounds (< {MIN_ROUNDS}): no target is called met",
              flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"ab-{time.strftime('%Y%m%d-%H%M%S')}.json"
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        "settings": {"rounds": args.rounds, "duration_s": args.duration,
                     "scenarios": args.scenario, "side_args": args.side_args,
                     "identities": args.identities},
        "sides": {label: side.describe() for label, side in sides.items()},
        "variants": {},
    }
    failed = False
    with ExitStack() as stack:
        auth_url = None
        if any(v.auth == "globus" for v in variants):
            auth_url, _ = stack.enter_context(loopback_auth())
        for variant in variants:
            try:
                results["variants"][variant.name] = bench_variant(
                    variant, sides, args, wrk_bin, auth_url)
            except RuntimeError as error:  # SideError, or wrk failing
                print(f"\n{variant.name}: FAILED\n{error}", flush=True)
                results.setdefault("failed", {})[variant.name] = str(error)
                failed = True
            out.write_text(json.dumps(results, indent=2))  # partial results survive
    print_tables(results)
    print_targets(results)
    print(f"\nwritten to {out.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
