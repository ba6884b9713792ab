"""Stock WSGI servers compared on the service as it is in this checkout
(issue 19: the production server "chosen by measurement").

    .venv/bin/python -m bench.servers                 # 5 rounds of 5 s
    .venv/bin/python -m bench.servers --quick         # 1 s runs, 2 rounds
    .venv/bin/python -m bench.servers --only granian --only gunicorn-sync

Every candidate serves the same ``bench.candidate_app:app`` (this checkout's
app/, on PYTHONPATH) with ONE process, the memory store and dev auth, with
the server's stock settings except the few below; the servers come from a
bench-only venv (bench/build/venv-servers-<digest>: this checkout's
requirements.txt plus granian, uWSGI and waitress where not pinned there; uWSGI
compiles, and a server that does not install is reported and left out):

  granian           --interface wsgi --workers 1 --blocking-threads 4
  gunicorn-gthread  --workers 1 --worker-class gthread --threads 4
  gunicorn-sync     --workers 1 --worker-class sync
  uwsgi             --master --processes 1 --threads 4 --http-socket, and
                    --add-header "Connection: close" (it keeps no connection open)
  uwsgi-http11      the same with --http11-socket (keep-alive) instead; uWSGI
                    2.0.31 then passes REMOTE_ADDR 0.0.0.0 for every request
                    after a connection's first, which dev auth refuses (403)
  waitress          --threads 4
  production        this checkout's own production start (its settings, its
                    workers for the memory store), for reference

uWSGI runs with --disable-logging (the others write no access log by default;
the app's own request log line is written under every server alike). wrk
-t1 -c4 with keep-alive (--close: "Connection: close"), rounds interleaved
(the candidates' order reversed every other round), each scenario of a
round measured on every candidate in turn; server CPU per request from
/proc. Prints per-round lines and a Markdown table; writes
bench/results/servers-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests

from bench.load import ONE_IDENTITY_LIMITS, Request, require_wrk, run_wrk
from bench.sides import (
    AB_DIR,
    RESULTS,
    ROOT,
    Server,
    SideError,
    build_venv,
    clean_env,
    locked,
    serve,
)
from tests.server import free_port

APP = "bench.candidate_app:app"
TOKEN = "dev-token-bench"
SCENARIOS = ("introspect", "status", "run")
RUN_BODY = '{"request_id":"%s","body":{"utc_offset":5.5}}'
# Installed into the bench-only venv where requirements.txt does not pin them.
PINS = {"granian": "2.8.9", "waitress": "3.0.2", "uwsgi": "2.0.31", "gunicorn": "27.0.1"}
OPTIONAL = ("uwsgi", "waitress")  # may fail to install (uWSGI compiles): left out then


def commands(venv: Path) -> dict[str, Callable[[int], list[str]]]:
    bin_ = venv / "bin"
    gunicorn = [str(bin_ / "gunicorn"), "--workers", "1"]
    uwsgi = [str(bin_ / "uwsgi"), "--master", "--processes", "1", "--threads", "4",
             "--module", APP, "--need-app", "--disable-logging", "--die-on-term",
             "--virtualenv", str(venv), "--pythonpath", str(ROOT)]
    production: Callable[[int], list[str]]
    if (ROOT / "app" / "gunicorn_conf.py").exists():
        def production(p: int) -> list[str]:
            return [str(bin_ / "gunicorn"), "-c", "python:app.gunicorn_conf",
                    "--bind", f"127.0.0.1:{p}", "app:create_app()"]
    else:
        def production(p: int) -> list[str]:
            return [str(bin_ / "python"), "-m", "app", "--host", "127.0.0.1", "--port", str(p)]
    return {
        "granian": lambda p: [str(bin_ / "granian"), "--interface", "wsgi", "--host",
                              "127.0.0.1", "--port", str(p), "--workers", "1",
                              "--blocking-threads", "4", APP],
        "gunicorn-gthread": lambda p: [*gunicorn, "--worker-class", "gthread", "--threads", "4",
                                       "--bind", f"127.0.0.1:{p}", APP],
        "gunicorn-sync": lambda p: [*gunicorn, "--worker-class", "sync",
                                    "--bind", f"127.0.0.1:{p}", APP],
        # --http-socket closes every connection: say so, as gunicorn's sync worker
        # does, or wrk counts each close as a read error.
        "uwsgi": lambda p: [*uwsgi, "--http-socket", f"127.0.0.1:{p}",
                            "--add-header", "Connection: close"],
        "uwsgi-http11": lambda p: [*uwsgi, "--http11-socket", f"127.0.0.1:{p}"],
        "waitress": lambda p: [str(bin_ / "waitress-serve"), "--threads=4",
                               f"--listen=127.0.0.1:{p}", APP],
        "production": production,
    }


def pinned(requirements: Path) -> set[str]:
    names = set()
    for line in requirements.read_text().splitlines():
        match = re.match(r"\s*([A-Za-z0-9_.-]+)", line)
        if match and not line.lstrip().startswith(("#", "-")):
            names.add(match.group(1).lower().replace("_", "-"))
    return names


def servers_venv() -> tuple[Path, dict[str, str]]:
    """The bench-only venv; which optional servers did not install, and why."""
    requirements = ROOT / "requirements.txt"
    have = pinned(requirements)
    extra = [f"{n}=={v}" for n, v in PINS.items() if n not in have and n not in OPTIONAL]
    missing: dict[str, str] = {}
    with locked():
        venv = build_venv([requirements], extra, name="venv-servers")
        for name in OPTIONAL:
            if name in have:
                continue
            ok, failed = venv / f".{name}-installed", venv / f".{name}-failed"
            if not ok.exists() and not failed.exists():
                print(f"installing {name}=={PINS[name]} into {venv.name}", flush=True)
                done = subprocess.run(
                    [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                     "--disable-pip-version-check", f"{name}=={PINS[name]}"],
                    capture_output=True, text=True, check=False, timeout=1800)
                if done.returncode == 0:
                    ok.write_text("")
                else:
                    tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
                    failed.write_text(tail)
            if failed.exists():
                missing[name] = failed.read_text()
    return venv, missing


def versions(venv: Path) -> dict[str, str]:
    code = ("import importlib.metadata as m, json; out = {}\n"
            "for n in ('granian', 'gunicorn', 'uwsgi', 'waitress', 'Flask'):\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    done = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True,
                          text=True, check=True)
    return dict(json.loads(done.stdout))


def start_action(url: str) -> str:
    response = requests.post(url + "/run", timeout=30,
                             json={"request_id": f"bench-{uuid.uuid4()}",
                                   "body": {"utc_offset": 5.5}},
                             headers={"Authorization": f"Bearer {TOKEN}"})
    response.raise_for_status()
    return str(response.json()["action_id"])


def request_for(scenario: str, action_id: str) -> Request:
    if scenario == "introspect":
        return Request("GET", "/")
    if scenario == "status":
        return Request("GET", f"/{action_id}/status")
    return Request("POST", "/run", RUN_BODY)


def measure(wrk_bin: str, server: Server, request: Request, seconds: float,
            close: bool) -> dict[str, Any]:
    before = server.cpu_seconds()
    m = run_wrk(wrk_bin, server.url, request, token=TOKEN, seconds=seconds, connections=4,
                close=close)
    return {**m.as_dict(), "cpu_us": (server.cpu_seconds() - before) / max(1, m.requests) * 1e6}


def summarize(rounds: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    med = statistics.median
    out: dict[str, Any] = {}
    for name, by_scenario in rounds.items():
        out[name] = {s: {"rps": round(med(r["rps"] for r in rows)),
                         "rps_rounds": [round(r["rps"]) for r in rows],
                         "p99_ms": round(med(r["p99_ms"] for r in rows), 2),
                         "cpu_us": round(med(r["cpu_us"] for r in rows)),
                         "non_2xx": sum(r["non_2xx"] for r in rows),
                         "socket_errors": sum(r["errors"] for r in rows)}
                     for s, rows in by_scenario.items()}
    for s in SCENARIOS:
        clean = [v[s]["rps"] for v in out.values()
                 if s in v and v[s]["non_2xx"] == 0 and v[s]["socket_errors"] == 0]
        best = max(clean, default=0)
        for v in out.values():
            if s in v:
                ok = v[s]["non_2xx"] == 0 and v[s]["socket_errors"] == 0
                v[s]["of_best"] = round(v[s]["rps"] / best, 3) if ok and best else None
    return out


def print_table(summary: dict[str, Any], scenarios: list[str]) -> None:
    print("\n| server (1 process) | " + " | ".join(
        f"{s} req/s (rounds) | of best | CPU µs | non-2xx" for s in scenarios) + " |")
    print("|---|" + "---:|---:|---:|---:|" * len(scenarios))
    for name, v in summary.items():
        cells = []
        for s in scenarios:
            b = v[s]
            share = f"{b['of_best']:.2f}" if b["of_best"] is not None else "not counted"
            errors = f" +{b['socket_errors']} socket errors" if b["socket_errors"] else ""
            cells.append(f"{b['rps']:,} ({', '.join(map(str, b['rps_rounds']))}) | {share} | "
                         f"{b['cpu_us']} | {b['non_2xx']}{errors}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.servers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", metavar="SERVER",
                        help="only these candidates (repeatable)")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--close", action="store_true", help='"Connection: close" on every '
                        "request")
    parser.add_argument("--quick", action="store_true", help="1 s runs, 2 rounds")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds = 1, 2
    scenarios = args.scenario or list(SCENARIOS)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    wrk_bin = require_wrk()
    try:
        venv, missing = servers_venv()
    except SideError as error:
        raise SystemExit(f"building the servers' venv failed: {error}") from None
    table = commands(venv)
    unknown = set(args.only or ()) - set(table)
    if unknown:
        raise SystemExit(f"unknown candidates {sorted(unknown)}; known: {', '.join(table)}")
    names = [n for n in (args.only or table)
             if not any(n.startswith(m) for m in missing)]
    for name, why in missing.items():
        print(f"{name}: did not install, left out:\n{why}", flush=True)
    env = {**clean_env(venv, [ROOT]), "FLASK_AUTH_MODE": "dev", "FLASK_STORE_URL": "memory://",
           "FLASK_MIN_DELAY_SECONDS": "86400", "FLASK_MAX_DELAY_SECONDS": "172800",
           **ONE_IDENTITY_LIMITS}  # one identity sends every request
    run_dir = AB_DIR / "run-servers"
    run_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        "settings": {"wrk": f"-t1 -c4 -d{args.duration}s", "rounds": args.rounds,
                     "connection": "close" if args.close else "keep-alive"},
        "versions": versions(venv), "not_installed": missing, "commands": {},
    }
    rounds: dict[str, dict[str, list[dict[str, Any]]]] = {
        n: {s: [] for s in scenarios} for n in names}
    failed: dict[str, str] = {}
    with ExitStack() as stack:
        servers: dict[str, Server] = {}
        ids: dict[str, str] = {}
        for name in names:
            port = free_port()
            try:
                servers[name] = stack.enter_context(serve(table[name](port), env, run_dir, port))
                ids[name] = start_action(servers[name].url)
            except (SideError, requests.RequestException) as error:
                print(f"{name}: did not start, left out:\n{error}", flush=True)
                failed[name] = str(error)
                continue
            results["commands"][name] = " ".join(servers[name].command)
            print(f"{name}: {results['commands'][name]} "
                  f"({servers[name].processes()} processes)", flush=True)
        names = [n for n in names if n in servers]
        for name in names:  # warm-up
            for s in scenarios:
                measure(wrk_bin, servers[name], request_for(s, ids[name]), 1, args.close)
        for round_no in range(args.rounds):
            order = names if round_no % 2 == 0 else names[::-1]
            for s in scenarios:
                line = []
                for name in order:
                    m = measure(wrk_bin, servers[name], request_for(s, ids[name]),
                                args.duration, args.close)
                    rounds[name][s].append(m)
                    line.append(f"{name} {m['rps']:,.0f}/s ({m['non_2xx']} non-2xx)")
                print(f"  round {round_no + 1} {s:>10}: " + ", ".join(line), flush=True)
    results["failed"] = failed
    results["loadavg_after"] = os.getloadavg()
    summary = summarize({n: rounds[n] for n in names})
    results["summary"] = summary
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"servers-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\n### Stock servers, 1 process, memory store, dev auth, wrk -t1 -c4 "
          f"-d{args.duration}s, {results['settings']['connection']}, {args.rounds} rounds "
          f"(load {results['machine']['loadavg'][0]:.2f} before)\n")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()))
    print_table(summary, scenarios)
    print(f"\nwritten to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
