"""The benchmark of issue 6: the service against a bare Flask app, under load.

    .venv/bin/python -m bench.run            # everything (about 5 minutes)
    .venv/bin/python -m bench.run --quick    # 1 worker, memory store, 2 s runs
    .venv/bin/python -m bench.run --scenario status --workers 1 --store memory

Installs wrk (Debian package) if missing. Starts the service (dev auth, actions
that stay ACTIVE for a day) and bench/bare_app.py the way a user starts the
service, ``python -m app`` (granian, production's settings; ``--app`` for the
others), both on 127.0.0.1, and loads them in turn with wrk; each round
measures the bare app first, then the scenarios, so every ratio compares
figures taken moments apart. Prints medians over the rounds and writes
everything to bench/results/<time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.load import ONE_IDENTITY_LIMITS
from tests.server import serve_process

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LUA = BENCH / "lua"
RESULTS = BENCH / "results"
# python -m app checks the service's settings whatever app it serves, and
# refuses the memory store on several workers: the other apps get this store.
CHECKED_STORE = f"sqlite:///{tempfile.gettempdir()}/bench-launcher-check.db"
TOKEN = "dev-token-bench"
CONNECTIONS = 4

SCENARIOS = ("introspect", "status", "run", "lifecycle")
# Scenarios that need every worker to see the same actions.
SHARED_STATE = {"status", "lifecycle"}

PATHS = {
    # spec 1.0 paths (app/spec), and the newer /actions/... style
    "classic": {"run": "/run", "status": "/%s/status", "cancel": "/%s/cancel",
                "release": "/%s/release"},
    "actions": {"run": "/actions", "status": "/actions/%s", "cancel": "/actions/%s/cancel",
                "release": "/actions/%s/release"},
}


@dataclass
class Store:
    name: str
    url: str
    shared: bool  # one state for every worker process


@dataclass
class Measure:
    rps: float
    p50_ms: float
    p99_ms: float
    bad_status: int
    socket_errors: int


@dataclass
class Series:
    rounds: list[Measure] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        med = statistics.median
        out: dict[str, Any] = {
            "rps": round(med(m.rps for m in self.rounds)),
            "p50_ms": round(med(m.p50_ms for m in self.rounds), 2),
            "p99_ms": round(med(m.p99_ms for m in self.rounds), 2),
            "bad_status": sum(m.bad_status for m in self.rounds),
            "socket_errors": sum(m.socket_errors for m in self.rounds),
            "rounds": [m.__dict__ for m in self.rounds],
        }
        if self.ratios:
            out["ratio"] = round(med(self.ratios), 3)
            out["ratios"] = [round(r, 3) for r in self.ratios]
        return out


# --- processes ----------------------------------------------------------------
def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk missing: installing the Debian package", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    install = [*sudo, "apt-get", "install", "-y", "wrk"]
    if subprocess.run(install, capture_output=True).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update"], check=True, capture_output=True)
        subprocess.run(install, check=True, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("could not install wrk")
    return found


@contextmanager
def serve(
    app: str, workers: int, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> Iterator[str]:
    """Serve ``app`` (imported from ``cwd``) with ``python -m app``; yield its URL.
    tests/server.py's launcher, as in the tests."""
    settings = {"FLASK_AUTH_MODE": "dev", "FLASK_STORE_URL": CHECKED_STORE, **(env or {})}
    with serve_process(settings, workers, app, cwd=cwd, startup_timeout=180) as (url, _process):
        yield url


def service_env(store: Store) -> dict[str, str]:
    return {
        "FLASK_AUTH_MODE": "dev",
        "FLASK_MIN_DELAY_SECONDS": "86400",
        "FLASK_MAX_DELAY_SECONDS": "172800",
        "FLASK_STORE_URL": store.url,
        **ONE_IDENTITY_LIMITS,  # one identity sends every request
    }


# --- wrk ------------------------------------------------------------------------
def wrk(
    wrk_bin: str, url: str, script: str, seconds: float, env: dict[str, str], threads: int = 1
) -> Measure:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write((LUA / "common.lua").read_text() + "\n" + (LUA / script).read_text())
    try:
        done = subprocess.run(
            [wrk_bin, f"-t{threads}", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s",
             "--timeout", "5s", "-s", lua.name, url],
            env={**os.environ, "BENCH_TOKEN": TOKEN, **env},
            capture_output=True, text=True, timeout=seconds + 30, check=True,
        )
    finally:
        os.unlink(lua.name)
    line = next(x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON "))
    data = json.loads(line.removeprefix("BENCH_JSON "))
    return Measure(
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        bad_status=data["bad_status"],
        socket_errors=data["socket_errors"],
    )


def start_action(url: str, paths: dict[str, str]) -> str:
    response = requests.post(
        url + paths["run"],
        json={"request_id": f"bench-{uuid.uuid4()}", "body": {"utc_offset": 5.5}},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["action_id"])


def scenario_call(
    name: str, wrk_bin: str, url: str, seconds: float, paths: dict[str, str], action_id: str
) -> Measure:
    nonce = uuid.uuid4().hex[:12]
    env = {"BENCH_NONCE": nonce, "BENCH_RUN_PATH": paths["run"],
           "BENCH_STATUS_FMT": paths["status"], "BENCH_CANCEL_FMT": paths["cancel"],
           "BENCH_RELEASE_FMT": paths["release"]}
    if name == "introspect":
        return wrk(wrk_bin, url, "get.lua", seconds, {**env, "BENCH_PATH": "/"})
    if name == "status":
        path = paths["status"] % action_id
        return wrk(wrk_bin, url, "get.lua", seconds, {**env, "BENCH_PATH": path})
    if name == "run":
        return wrk(wrk_bin, url, "run.lua", seconds, env)
    if name == "lifecycle":
        return wrk(wrk_bin, url, "lifecycle.lua", seconds, env, threads=CONNECTIONS)
    raise ValueError(name)


# --- stores -----------------------------------------------------------------------
def available_stores(names: list[str], pg_url: str, tmp: Path) -> list[Store]:
    """The stores open_store accepts today; the others are reported and skipped."""
    from app.store import open_store

    candidates = {
        "memory": Store("memory", "memory://", shared=False),
        "sqlite": Store("sqlite", f"sqlite:///{tmp / 'bench.db'}", shared=True),
        "postgresql": Store("postgresql", pg_url, shared=True),
    }
    stores = []
    for name in names:
        store = candidates[name]
        try:
            opened = open_store(store.url)
            ok = opened.ping()
            opened.close()
        except Exception as error:  # any failure means "not available"
            print(f"store {name}: not available ({type(error).__name__}: {error}); skipped")
            continue
        if ok:
            stores.append(store)
        else:
            print(f"store {name}: does not answer ping(); skipped")
    return stores


# --- the runs -------------------------------------------------------------------------
def bench_load(args: argparse.Namespace, wrk_bin: str, stores: list[Store]) -> dict[str, Any]:
    paths = PATHS[args.paths]
    results: dict[str, Any] = {}
    for workers in args.workers:
        with serve("bench.bare_app:app", workers) as bare:
            wrk(wrk_bin, bare, "get.lua", 1, {})  # warm-up
            for store in stores:
                if workers > 1 and not store.shared:
                    print(f"\n== {store.name}/w{workers} (skipped: the launcher refuses "
                          "the memory store on several workers)", flush=True)
                    continue
                scenarios = [
                    s for s in args.scenario
                    if store.shared or workers == 1 or s not in SHARED_STATE
                ]
                skipped = sorted(set(args.scenario) - set(scenarios))
                key = f"{store.name}/w{workers}"
                print(f"\n== {key}" + (f" (skipped, state not shared: {skipped})"
                                       if skipped else ""), flush=True)
                with contextlib.ExitStack() as servers:
                    env = service_env(store)
                    ours = serve("app:create_app()", workers, env)
                    targets = {"": servers.enter_context(ours)}
                    if args.baseline_dir:
                        targets["@baseline"] = servers.enter_context(
                            serve("app:create_app()", workers, env, cwd=args.baseline_dir))
                    runs = [(n + t, n, url) for n in scenarios for t, url in targets.items()]
                    ids = {t: start_action(url, paths) for t, url in targets.items()}
                    if args.auth_ceiling and "introspect" in scenarios:
                        # GET / of the library's auth alone (bench/auth_app.py)
                        auth_app = servers.enter_context(serve("bench.auth_app:app", workers))
                        runs.append(("introspect@auth-only", "introspect", auth_app))
                        ids["@auth-only"] = ""
                    series = {"bare": Series(), **{label: Series() for label, _, _ in runs}}
                    for label, name, url in runs:  # warm-up
                        scenario_call(name, wrk_bin, url, 1, paths, ids[label[len(name):]])
                    for round_no in range(args.rounds):
                        base = wrk(wrk_bin, bare, "get.lua", args.duration, {})
                        series["bare"].rounds.append(base)
                        for label, name, url in runs:
                            m = scenario_call(name, wrk_bin, url, args.duration, paths,
                                              ids[label[len(name):]])
                            series[label].rounds.append(m)
                            series[label].ratios.append(m.rps / base.rps)
                        print(f"  round {round_no + 1}: bare {base.rps:.0f}/s, " + ", ".join(
                            f"{k} {series[k].rounds[-1].rps:.0f}/s" for k, _, _ in runs),
                            flush=True)
                results[key] = {n: s.summary() for n, s in series.items()}
                results[key]["skipped"] = skipped
    return results


def bench_flatness(args: argparse.Namespace, wrk_bin: str) -> dict[str, Any]:
    """Status latency with 1,000 and 100,000 stored actions (memory store, 1 worker)."""
    paths = PATHS[args.paths]
    sizes = (1_000, 100_000)
    env = service_env(Store("memory", "memory://", False))
    series = {n: Series() for n in sizes}
    print("\n== status latency vs stored actions (memory, 1 worker)", flush=True)
    with (
        serve("bench.prefilled:create_app()", 1, {**env, "BENCH_PREFILL": "1000"}) as small,
        serve("bench.prefilled:create_app()", 1, {**env, "BENCH_PREFILL": "100000"}) as big,
    ):
        urls = {1_000: small, 100_000: big}
        ids = {n: start_action(u, paths) for n, u in urls.items()}
        for n in sizes:
            scenario_call("status", wrk_bin, urls[n], 1, paths, ids[n])
        for _ in range(args.rounds):
            for n in sizes:
                m = scenario_call("status", wrk_bin, urls[n], args.duration, paths, ids[n])
                series[n].rounds.append(m)
    out = {str(n): s.summary() for n, s in series.items()}
    out["p50_ratio_100k_to_1k"] = round(out["100000"]["p50_ms"] / out["1000"]["p50_ms"], 3)
    out["rps_ratio_100k_to_1k"] = round(out["100000"]["rps"] / out["1000"]["rps"], 3)
    return out


def bench_memory() -> dict[str, Any]:
    out = {}
    for flag in ([], ["--tracemalloc"]):
        done = subprocess.run(
            [sys.executable, "-m", "bench.memory", *flag], cwd=ROOT,
            capture_output=True, text=True, check=True, timeout=600,
        )
        data = json.loads(done.stdout.strip().splitlines()[-1])
        out[data["method"]] = data
    return out


def extract_baseline(ref: str, into: Path) -> Path:
    """app/, config.py and schema.json of commit ``ref``, to serve beside ours
    (a commit whose ``python -m app`` is this launcher: granian, ``--app``)."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref, "app", "config.py", "schema.json"],
                             cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


# --- output ---------------------------------------------------------------------------
def print_table(results: dict[str, Any]) -> None:
    print("\n| store/workers | scenario | req/s | p50 ms | p99 ms | ratio to bare | non-2xx |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for key, block in results.get("load", {}).items():
        for name, s in block.items():
            if name == "skipped":
                continue
            ratio = f"{s['ratio']:.2f}" if "ratio" in s else "1"
            print(f"| {key} | {name} | {s['rps']} | {s['p50_ms']} | {s['p99_ms']} | {ratio} "
                  f"| {s['bad_status'] + s['socket_errors']} |")
    if "flatness" in results:
        f = results["flatness"]
        print("\n| stored actions | status req/s | p50 ms | p99 ms |")
        print("|---:|---:|---:|---:|")
        for n in ("1000", "100000"):
            print(f"| {int(n):,} | {f[n]['rps']} | {f[n]['p50_ms']} | {f[n]['p99_ms']} |")
        print(f"p50 ratio 100k/1k: {f['p50_ratio_100k_to_1k']}, "
              f"req/s ratio 100k/1k: {f['rps_ratio_100k_to_1k']}")
    if "memory" in results:
        m = results["memory"]
        print(f"\nbytes per stored action (memory store, 20,000 actions): "
              f"RSS growth {m['rss']['bytes_per_action']}, "
              f"tracemalloc {m['tracemalloc']['bytes_per_action']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="1 worker, memory store, 2 s per run, no flatness/memory")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS,
                        help="only these scenarios (repeatable)")
    parser.add_argument("--workers", type=int, action="append", choices=(1, 2))
    parser.add_argument("--store", action="append", choices=("memory", "sqlite", "postgresql"))
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3; at least 3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--paths", choices=tuple(PATHS), default="classic",
                        help="URL style: classic /run, /<id>/status; or actions /actions/...")
    parser.add_argument("--pg-url", default=os.environ.get(
        "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--baseline", metavar="GIT_REF",
                        help="also serve the app/ of this commit (e.g. main) beside the "
                        "working tree's, interleaved: scenario@baseline rows")
    parser.add_argument("--auth-ceiling", action="store_true",
                        help="also measure bench/auth_app.py (the library's auth, then a fixed "
                        "response): row introspect@auth-only")
    parser.add_argument("--only", choices=("load", "flatness", "memory"), action="append",
                        help="run only these parts (repeatable)")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = min(args.duration, 2)
        args.workers = args.workers or [1]
        args.store = args.store or ["memory"]
        args.only = args.only or ["load"]
    args.rounds = max(3, args.rounds)
    args.scenario = args.scenario or list(SCENARIOS)
    args.workers = args.workers or [1, 2]
    args.store = args.store or ["memory", "sqlite", "postgresql"]
    parts = args.only or ["load", "flatness", "memory"]

    args.baseline_dir = None
    wrk_bin = ensure_wrk()
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": {"wrk": f"-t1 -c{CONNECTIONS} -d{args.duration}s (lifecycle: "
                     f"-t{CONNECTIONS})", "rounds": args.rounds,
                     "server": "python -m app (granian)",
                     "paths": args.paths},
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        if args.baseline:
            args.baseline_dir = extract_baseline(args.baseline, Path(tmp) / "baseline")
            results["settings"]["baseline"] = args.baseline
        if "load" in parts:
            stores = available_stores(args.store, args.pg_url, Path(tmp))
            results["load"] = bench_load(args, wrk_bin, stores)
            out.write_text(json.dumps(results, indent=2))  # partial results survive
        if "flatness" in parts:
            results["flatness"] = bench_flatness(args, wrk_bin)
            out.write_text(json.dumps(results, indent=2))
        if "memory" in parts:
            results["memory"] = bench_memory()
    out.write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"\nwritten to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
