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

- req/s of GET / (introspect), GET /<id>/status and POST /run (fresh ids),
  each right after the same scenario on a reference server (REFERENCE) kept up
  for the whole store, as a ratio to it; and the server's CPU per request;
- the cached-token requests while one request waits on a slow introspection:
  a token Auth answers only after 3 s is sent, wrk runs for those 3 s with a
  cached token; its p99 and how many requests it got answered are reported,
  with whether the slow request itself got its 200.

Prints per-round values, medians and each candidate's median ratio to the
reference over the best one's (per scenario: "ratio to the best"); writes
bench/results/gunicorn-defaults-<time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
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

from bench.run import LUA, RESULTS, ROOT, ensure_wrk
from tests.loopback_auth import SLOW_PREFIX, loopback_auth, production_auth_env
from tests.server import free_port, stop_process_group

# Production's settings file (app/gunicorn_conf.py once it moves into the package).
CONF = next(p for p in (ROOT / "app" / "gunicorn_conf.py", ROOT / "gunicorn.conf.py")
            if p.exists())
SCENARIOS = ("introspect", "status", "run")
SLOW_SECONDS = 3.0
TOKEN = "cached-token-bench"  # introspected once per worker, then from its cache
# gevent is no dependency of the service: measured only where it is installed.
GEVENT = importlib.util.find_spec("gevent") is not None
PG_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


# Worker classes by short name; "standby" is app/workers.py's StandbyThreadsWorker.
WORKER_CLASSES = {"standby": "app.workers.StandbyThreadsWorker"}
THREADED = ("gthread", "standby")


@dataclass(frozen=True)
class Candidate:
    worker_class: str
    workers: int
    threads: int = 1

    @property
    def label(self) -> str:
        if self.worker_class not in THREADED:
            return f"{self.worker_class} w{self.workers}"
        return f"{self.worker_class} w{self.workers} t{self.threads}"


# Every candidate's figures are taken right after this setting's, on a server
# of its own kept up for the whole store: the ratio to it cancels the machine's
# drift (other jobs share its 2 cores). Sync workers: no keep-alive, so how
# wrk's connections happen to fall on the workers does not move the reference.
REFERENCE = {"memory": Candidate("sync", 1), "sqlite": Candidate("sync", 2),
             "postgresql": Candidate("sync", 2)}


def candidates(store: str, max_workers: int, full: bool) -> list[Candidate]:
    """Every worker class and thread count at each worker count (SQL stores: 1 to
    ``max_workers``); without ``full``, 1, 8 threads and gevent only at 2 and 4."""
    worker_counts = [1] if store == "memory" else list(range(1, max_workers + 1))
    out = []
    for workers in worker_counts:
        every = full or store == "memory" or workers in (2, 4)
        out.append(Candidate("sync", workers))
        out += [Candidate("gthread", workers, t) for t in (1, 2, 4, 8) if every or t in (2, 4)]
        out += [Candidate("standby", workers, t) for t in (1, 2, 4, 8) if every or t == 4]
        if GEVENT and every:
            out.append(Candidate("gevent", workers))
    return out


MASTERS: dict[str, int] = {}  # URL -> gunicorn master pid
TICK = os.sysconf("SC_CLK_TCK")


def server_cpu(master: int) -> float:
    """CPU seconds used so far by a gunicorn master and its workers, the exited
    ones included (in the master's children times)."""
    def times(pid: int, children: bool) -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15 if children else 13])

    total = times(master, children=True)
    for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split():
        with contextlib.suppress(OSError):
            total += times(int(pid), children=False)
    return total / TICK


# --- processes ------------------------------------------------------------------------
@contextmanager
def serve(candidate: Candidate, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "-c", str(CONF), "--bind", f"127.0.0.1:{port}",
        "--worker-class", WORKER_CLASSES.get(candidate.worker_class, candidate.worker_class),
        "--workers", str(candidate.workers),
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
        MASTERS[url] = process.pid
        yield url
    finally:
        MASTERS.pop(url, None)
        stop_process_group(process, timeout=15)
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
    """wrk's figures, and the server's CPU time per request (``cpu_us``): steadier
    than req/s on a shared machine, but blind to idle cores."""
    cpu_before = server_cpu(MASTERS[url])
    if name == "run":
        m = wrk(wrk_bin, url, "run.lua", seconds, connections, {"BENCH_RUN_PATH": "/run"})
    else:
        path = "/" if name == "introspect" else f"/{action_id}/status"
        m = wrk(wrk_bin, url, "get.lua", seconds, connections, {"BENCH_PATH": path})
    m["cpu_us"] = (server_cpu(MASTERS[url]) - cpu_before) / max(1, m["requests"]) * 1e6
    return m


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
    grid = candidates(store, args.max_workers, args.full)
    if args.only:
        grid = [c for c in grid if c.label in args.only]
    rounds: dict[str, list[dict[str, Any]]] = {c.label: [] for c in grid}
    with tempfile.TemporaryDirectory(prefix="bench-gd-") as tmp, \
            store_url(store, Path(tmp)) as url_of_store:
        env = {**production_auth_env(auth_url), "FLASK_STORE_URL": url_of_store,
               "FLASK_MIN_DELAY_SECONDS": "86400", "FLASK_MAX_DELAY_SECONDS": "172800",
               "FLASK_LOG_LEVEL": "WARNING"}
        with serve(REFERENCE[store], env) as ref:
            ref_action = start_action(ref)
            for name in SCENARIOS:
                scenario(name, wrk_bin, ref, 1, args.connections, ref_action)
            for round_no in range(args.rounds):
                order = grid if round_no % 2 == 0 else grid[::-1]
                for c in order:
                    row = measure(c, env, args, wrk_bin, ref, ref_action)
                    rounds[c.label].append(row)
                    s = row["slow_auth"]
                    print(f"  {store} round {round_no + 1} {c.label:>16}: " + ", ".join(
                        f"{n} {row[n]['rps']:.0f}/s ({row[n]['vs_ref']:.2f} of ref, "
                        f"{row[n]['cpu_us']:.0f} us CPU)"
                        for n in SCENARIOS)
                        + f"; slow auth: p99 {s['p99_ms']:.0f} ms, {s['answered']} answered,"
                        f" slow one {s['slow_status']} after {s['slow_seconds']} s", flush=True)
    return summarize(rounds)


def measure(c: Candidate, env: dict[str, str], args: argparse.Namespace, wrk_bin: str,
            ref: str, ref_action: str) -> dict[str, Any]:
    """One round of candidate ``c``: each scenario right after the reference's."""
    with serve(c, env) as url:
        action_id = start_action(url)
        scenario("introspect", wrk_bin, url, 1, args.connections, action_id)  # warm-up
        row: dict[str, Any] = {}
        for name in SCENARIOS:
            base = scenario(name, wrk_bin, ref, args.duration, args.connections, ref_action)
            m = scenario(name, wrk_bin, url, args.duration, args.connections, action_id)
            row[name] = {**m, "ref_rps": base["rps"], "vs_ref": m["rps"] / base["rps"]}
        row["slow_auth"] = slow_auth(wrk_bin, url, args.connections, action_id)
    return row


def summarize(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians; ``ratio``: the median ratio to the reference over the best one's."""
    med = statistics.median
    out: dict[str, Any] = {}
    for label, rows in rounds.items():
        out[label] = {
            **{n: {"rps": round(med(r[n]["rps"] for r in rows)),
                   "rounds": [round(r[n]["rps"]) for r in rows],
                   "vs_ref": round(med(r[n]["vs_ref"] for r in rows), 3),
                   "vs_ref_rounds": [round(r[n]["vs_ref"], 3) for r in rows],
                   "cpu_us": round(med(r[n]["cpu_us"] for r in rows)),
                   "cpu_us_rounds": [round(r[n]["cpu_us"]) for r in rows],
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
        best = max(v[n]["vs_ref"] for v in out.values())
        for v in out.values():
            v[n]["ratio"] = round(v[n]["vs_ref"] / best, 3)
    for v in out.values():
        v["min_ratio"] = min(v[n]["ratio"] for n in SCENARIOS)
    return out


def print_table(store: str, summary: dict[str, Any]) -> None:
    def listed(values: list[Any]) -> str:
        return ", ".join(map(str, values))

    print(f"\n### {store}: req/s as a share of the reference's (rounds); ratio to the best\n")
    print("| setting | " + " | ".join(f"{n} | ratio" for n in SCENARIOS)
          + " | min ratio |")
    print("|---|" + "---:|---:|" * len(SCENARIOS) + "---:|")
    for label, v in summary.items():
        cells = " | ".join(f"{v[n]['vs_ref']:.2f} ({listed(v[n]['vs_ref_rounds'])}) | "
                           f"{v[n]['ratio']:.2f}" for n in SCENARIOS)
        print(f"| {label} | {cells} | {v['min_ratio']:.2f} |")
    print(f"\n### {store}: req/s, server CPU µs per request (rounds), slow Auth\n")
    print("| setting | " + " | ".join(f"{n} req/s | CPU µs" for n in SCENARIOS)
          + " | p99 ms while one waits 3 s on Auth (rounds) | answered | slow one |")
    print("|---|" + "---:|---:|" * len(SCENARIOS) + "---:|---:|---|")
    for label, v in summary.items():
        cells = " | ".join(f"{v[n]['rps']} | {v[n]['cpu_us']} ({listed(v[n]['cpu_us_rounds'])})"
                           for n in SCENARIOS)
        s = v["slow_auth"]
        slow = ", ".join(f"{st} {sec}s" for st, sec in s["slow"])
        print(f"| {label} | {cells} | {s['p99_ms']} ({listed(s['p99_rounds'])}) | "
              f"{listed(s['answered'])} | {slow} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gunicorn_defaults",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", action="append", choices=("memory", "sqlite", "postgresql"))
    parser.add_argument("--rounds", type=int, default=3, help="at least 3")
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=8, help="wrk -c (default 8)")
    parser.add_argument("--max-workers", type=int, default=5)
    parser.add_argument("--full", action="store_true",
                        help="every thread count and gevent at every worker count")
    parser.add_argument("--only", action="append", metavar="LABEL",
                        help='only this candidate, e.g. "gthread w3 t2" (repeatable)')
    args = parser.parse_args(argv)
    args.rounds = max(3, args.rounds)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers too
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
