"""Production's gunicorn worker settings, measured per store (issue 15, part 3).

    .venv/bin/python -m bench.gunicorn_defaults                  # every store
    .venv/bin/python -m bench.gunicorn_defaults --store memory --duration 2

For each store, every candidate (worker class, workers, threads) is served in
turn by gunicorn with production's own settings file (only --worker-class,
--workers and --threads differ), with real Globus Auth mode against a loopback
introspection server (tests/loopback_auth.py; the tokens wrk sends are cached
after their first use, as a busy client's are). Each round visits every
candidate (the order reversed every other round), and for each one measures,
with wrk on 127.0.0.1:

- req/s of GET / (introspect), GET /<id>/status and POST /run (fresh ids);
- the cached-token requests while one request waits on a slow introspection:
  a token Auth answers only after 3 s is sent, wrk runs for those 3 s with a
  cached token; its p99 and how many requests it got answered are reported,
  with whether the slow request itself got its 200.

Prints per-round values, medians and each candidate's ratio to the best median
of the store (per scenario); writes bench/results/gunicorn-defaults-<time>.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import requests

from bench.run import LUA, RESULTS, ROOT, ensure_wrk, free_port
from tests.loopback_auth import SLOW_PREFIX, loopback_auth, production_auth_env

# Production's settings file (app/gunicorn_conf.py once it moves into the package).
CONF = next(p for p in (ROOT / "app" / "gunicorn_conf.py", ROOT / "gunicorn.conf.py")
            if p.exists())
SCENARIOS = ("introspect", "status", "run")
SLOW_SECONDS = 3.0
TOKEN = "cached-token-bench"  # introspected once per worker, then from its cache
# gevent is no dependency of the service: measured only where it is installed.
GEVENT = importlib.util.find_spec("gevent") is not None
PG_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass(frozen=True)
class Candidate:
    worker_class: str
    workers: int
    threads: int = 1

    @property
    def label(self) -> str:
        if self.worker_class != "gthread":
            return f"{self.worker_class} w{self.workers}"
        return f"{self.worker_class} w{self.workers} t{self.threads}"


def candidates(store: str, max_workers: int) -> list[Candidate]:
    worker_counts = [1] if store == "memory" else list(range(1, max_workers + 1))
    out = []
    for workers in worker_counts:
        out.append(Candidate("sync", workers))
        out += [Candidate("gthread", workers, t) for t in (1, 2, 4, 8)]
        if GEVENT:
            out.append(Candidate("gevent", workers))
    return out


# --- processes ------------------------------------------------------------------------
@contextmanager
def serve(candidate: Candidate, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "-c", str(CONF), "--bind", f"127.0.0.1:{port}",
        "--worker-class", candidate.worker_class, "--workers", str(candidate.workers),
        "--threads", str(candidate.threads), "app:create_app()",
    ]
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"gunicorn exited:\n{log.read().decode(errors='replace')}")
            try:
                requests.get(url + "/healthz", timeout=1)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@contextmanager
def store_url(store: str, tmp: Path) -> Iterator[str]:
    """A fresh store for this run: a new SQLite file, a new PostgreSQL schema."""
    if store == "memory":
        yield "memory://"
    elif store == "sqlite":
        yield f"sqlite:///{tmp / 'bench.db'}"
    else:
        schema = f"bench_gd_{uuid.uuid4().hex[:10]}"
        plain = PG_URL.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield f"{PG_URL}?options=-csearch_path%3D{schema}"
        finally:
            with psycopg.connect(plain, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# --- wrk --------------------------------------------------------------------------------
def wrk(wrk_bin: str, url: str, script: str, seconds: float, connections: int,
        env: dict[str, str]) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write((LUA / "common.lua").read_text() + "\n" + (LUA / script).read_text())
    try:
        done = subprocess.run(
            [wrk_bin, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
             "-s", lua.name, url],
            env={**os.environ, "BENCH_TOKEN": TOKEN, "BENCH_NONCE": uuid.uuid4().hex[:12],
                 **env},
            capture_output=True, text=True, timeout=seconds + 30, check=True)
    finally:
        os.unlink(lua.name)
    line = next(x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON "))
    data = json.loads(line.removeprefix("BENCH_JSON "))
    return {"rps": data["requests"] / (data["duration_us"] / 1e6),
            "requests": data["requests"], "p99_ms": data["p99_us"] / 1000,
            "errors": data["bad_status"] + data["socket_errors"]}


def scenario(name: str, wrk_bin: str, url: str, seconds: float, connections: int,
             action_id: str) -> dict[str, float]:
    if name == "run":
        return wrk(wrk_bin, url, "run.lua", seconds, connections, {"BENCH_RUN_PATH": "/run"})
    path = "/" if name == "introspect" else f"/{action_id}/status"
    return wrk(wrk_bin, url, "get.lua", seconds, connections, {"BENCH_PATH": path})


def slow_auth(wrk_bin: str, url: str, connections: int, action_id: str) -> dict[str, Any]:
    """Cached-token status requests while one request waits SLOW_SECONDS on Auth."""
    outcome: dict[str, Any] = {}

    def slow_request() -> None:
        started = time.monotonic()
        token = f"{SLOW_PREFIX}{uuid.uuid4().hex}"  # never seen: not in any cache
        try:
            response = requests.get(url + "/", headers={"Authorization": f"Bearer {token}"},
                                    timeout=30)
            outcome["slow_status"] = response.status_code
        except requests.RequestException as error:
            outcome["slow_status"] = type(error).__name__
        outcome["slow_seconds"] = round(time.monotonic() - started, 2)

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.05)  # the slow request is in, waiting on Auth
    during = wrk(wrk_bin, url, "get.lua", int(SLOW_SECONDS), connections,
                 {"BENCH_PATH": f"/{action_id}/status"})
    thread.join()
    return {**outcome, "p99_ms": during["p99_ms"], "answered": during["requests"],
            "errors": during["errors"]}


# --- the run ----------------------------------------------------------------------------
def start_action(url: str) -> str:
    response = requests.post(
        url + "/run", json={"request_id": f"bench-{uuid.uuid4()}", "body": {"utc_offset": 1}},
        headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    response.raise_for_status()
    return str(response.json()["action_id"])


def bench_store(store: str, args: argparse.Namespace, wrk_bin: str,
                auth_url: str) -> dict[str, Any]:
    grid = candidates(store, args.max_workers)
    if args.only:
        grid = [c for c in grid if c.label in args.only]
    rounds: dict[str, list[dict[str, Any]]] = {c.label: [] for c in grid}
    with tempfile.TemporaryDirectory(prefix="bench-gd-") as tmp, \
            store_url(store, Path(tmp)) as url_of_store:
        env = {**production_auth_env(auth_url), "FLASK_STORE_URL": url_of_store,
               "FLASK_MIN_DELAY_SECONDS": "86400", "FLASK_MAX_DELAY_SECONDS": "172800",
               "FLASK_LOG_LEVEL": "WARNING"}
        for round_no in range(args.rounds):
            order = grid if round_no % 2 == 0 else grid[::-1]
            for c in order:
                with serve(c, env) as url:
                    action_id = start_action(url)
                    for name in SCENARIOS:  # warm-up: every worker caches the token
                        scenario(name, wrk_bin, url, 1, args.connections, action_id)
                    row: dict[str, Any] = {
                        name: scenario(name, wrk_bin, url, args.duration, args.connections,
                                       action_id)
                        for name in SCENARIOS
                    }
                    row["slow_auth"] = slow_auth(wrk_bin, url, args.connections, action_id)
                rounds[c.label].append(row)
                s = row["slow_auth"]
                print(f"  {store} round {round_no + 1} {c.label:>16}: " + ", ".join(
                    f"{n} {row[n]['rps']:.0f}/s" for n in SCENARIOS)
                    + f"; slow auth: p99 {s['p99_ms']:.0f} ms, {s['answered']} answered, "
                    f"slow one {s['slow_status']} after {s['slow_seconds']} s", flush=True)
    return summarize(rounds)


def summarize(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    med = statistics.median
    out: dict[str, Any] = {}
    for label, rows in rounds.items():
        out[label] = {
            **{n: {"rps": round(med(r[n]["rps"] for r in rows)),
                   "rounds": [round(r[n]["rps"]) for r in rows],
                   "errors": sum(r[n]["errors"] for r in rows)} for n in SCENARIOS},
            "slow_auth": {
                "p99_ms": round(med(r["slow_auth"]["p99_ms"] for r in rows), 1),
                "p99_rounds": [round(r["slow_auth"]["p99_ms"], 1) for r in rows],
                "answered": [r["slow_auth"]["answered"] for r in rows],
                "slow": [(r["slow_auth"]["slow_status"], r["slow_auth"]["slow_seconds"])
                         for r in rows],
            },
        }
    for n in SCENARIOS:
        best = max(v[n]["rps"] for v in out.values())
        for v in out.values():
            v[n]["ratio"] = round(v[n]["rps"] / best, 3)
    for v in out.values():
        v["min_ratio"] = min(v[n]["ratio"] for n in SCENARIOS)
    return out


def print_table(store: str, summary: dict[str, Any]) -> None:
    print(f"\n### {store}\n")
    print("| setting | " + " | ".join(f"{n} req/s (rounds) | ratio" for n in SCENARIOS)
          + " | p99 ms during slow auth (rounds) | slow one |")
    print("|---|" + "---:|---:|" * len(SCENARIOS) + "---:|---|")
    for label, v in summary.items():
        cells = " | ".join(
            f"{v[n]['rps']} ({', '.join(map(str, v[n]['rounds']))}) | {v[n]['ratio']:.2f}"
            for n in SCENARIOS)
        s = v["slow_auth"]
        slow = ", ".join(f"{st} {sec}s" for st, sec in s["slow"])
        print(f"| {label} | {cells} | {s['p99_ms']} ({', '.join(map(str, s['p99_rounds']))})"
              f" | {slow} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gunicorn_defaults",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", action="append", choices=("memory", "sqlite", "postgresql"))
    parser.add_argument("--rounds", type=int, default=3, help="at least 3")
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=8, help="wrk -c (default 8)")
    parser.add_argument("--max-workers", type=int, default=5)
    parser.add_argument("--only", action="append", metavar="LABEL",
                        help='only this candidate, e.g. "gthread w3 t2" (repeatable)')
    args = parser.parse_args(argv)
    args.rounds = max(3, args.rounds)
    wrk_bin = ensure_wrk()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"gunicorn-defaults-{time.strftime('%Y%m%d-%H%M%S')}.json"
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "conf": str(CONF.relative_to(ROOT)),
        "settings": {"wrk": f"-t1 -c{args.connections} -d{args.duration}s",
                     "rounds": args.rounds, "slow_auth_seconds": SLOW_SECONDS},
    }
    with ExitStack() as stack:
        auth_url, _ = stack.enter_context(loopback_auth(SLOW_SECONDS))
        for store in args.store or ["memory", "sqlite", "postgresql"]:
            print(f"\n== {store}", flush=True)
            results[store] = bench_store(store, args, wrk_bin, auth_url)
            out.write_text(json.dumps(results, indent=2))
    for store in args.store or ["memory", "sqlite", "postgresql"]:
        print_table(store, results[store])
    print(f"\nwritten to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
