"""Instructions per request, counted by valgrind's callgrind: deterministic
where timings on this shared machine are not.

The app (``create_app``: dev auth, memory store, production's logging and
metrics; the request log lines go to a file) is called in process through its
WSGI callable, with environs made by werkzeug's ``EnvironBuilder``. One
process under callgrind per side and round answers, for each scenario, N2
requests, and asks callgrind (through a two-line C helper built with gcc) to
dump its counts after the first N1 and after the N2: the second dump holds
the instructions of N2 - N1 requests, with start-up, imports and warm-up
left out. ``PYTHONHASHSEED`` is fixed, the tree's bytecode is compiled
before the counted runs (no process compiles or writes any), and the
start-up heap is frozen out of the garbage collector's way.

    .venv/bin/python -m bench.callgrind                        # the working tree
    .venv/bin/python -m bench.callgrind --against 48db839      # + that commit, same rounds
    .venv/bin/python -m bench.callgrind --scenario run --rounds 3
    .venv/bin/python -m bench.callgrind --tree HEAD --against HEAD~1   # two commits
    .venv/bin/python -m bench.callgrind --store postgresql --against 6e7b116

``--store sqlite`` or ``postgresql`` serves from that store instead of memory:
a fresh file, or a fresh schema on BENCH_POSTGRES_URL (default the local
server's database ``test``), for each process; only this process's
instructions are counted, not the database server's.

``--against REF`` (repeatable; ``--tree REF`` measures a commit in place of
the working tree) checks REF out with ``git worktree add`` into a temporary
directory (removed afterwards) and measures its app with this venv. Every
side is measured in every round, two processes at a time (instruction
counts do not depend on the machine's load). Prints per-round figures, the
medians and each ratio (tree / REF).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("introspect", "status", "run")
TOKEN = "Bearer dev-token-bench"
WARMUP = 50  # requests before the counted ones, in both processes
SETTINGS: dict[str, object] = {}  # --set: create_app overrides for every side
PG_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


# --- inside the measured process ------------------------------------------------
def _serve(source: str, scenarios: list[str], n1: int, n2: int) -> None:
    """For each scenario: answer ``n1`` requests (the warm-up), tell callgrind
    to dump its counts (start-up and warm-up: discarded), answer ``n2 - n1``
    more, dump again (counted). Without callgrind (no helper): just answer."""
    sys.path.insert(0, source)
    from werkzeug.test import EnvironBuilder

    from app import create_app

    assert Path(sys.modules["app"].__file__).is_relative_to(source), "wrong tree imported"
    helper = os.environ.get("BENCH_CALLGRIND_HELPER")
    dump = ctypes.CDLL(helper).dump_stats if helper else lambda name: None
    app = create_app({
        "AUTH_MODE": "dev",
        "STORE_URL": os.environ.get("BENCH_CALLGRIND_STORE", "memory://"),
        "MIN_DELAY_SECONDS": 86_400,  # actions stay ACTIVE
        "MAX_DELAY_SECONDS": 172_800,
        "INTROSPECT_CACHE_TTL_SECONDS": 86_400,  # no re-introspection, however slow the run
        # One identity sends every request: rates it never reaches, still counted
        # (where the tree has them).
        **({"RUN_RATE_LIMIT": "1000000/minute", "GET_RATE_LIMIT": "1000000/minute"}
           if (Path(source) / "app" / "ratelimit.py").exists() else {}),
        **json.loads(os.environ.get("BENCH_CALLGRIND_SET", "{}")),  # --set KEY=VALUE
    })

    def environ(method: str, path: str, body: bytes | None = None) -> dict[str, object]:
        builder = EnvironBuilder(
            path=path, method=method, data=body,
            headers={"Authorization": TOKEN, "User-Agent": "bench.callgrind"},
            content_type="application/json" if body is not None else None,
            environ_base={"REMOTE_ADDR": "127.0.0.1"},
        )
        try:
            return builder.get_environ()
        finally:
            builder.close()

    def call(env: dict[str, object], body: bytes = b"") -> tuple[int, bytes]:
        env = dict(env)
        env["wsgi.input"] = io.BytesIO(body)
        if body:
            env["CONTENT_LENGTH"] = str(len(body))
        answer: list[str] = []
        result = app(env, lambda status, headers, exc_info=None: answer.append(status))
        try:
            content = b"".join(result)
        finally:
            getattr(result, "close", lambda: None)()
        return int(answer[0].split()[0]), content

    run_body = b'{"request_id": "setup", "body": {"utc_offset": 5.5}}'
    run_environ = environ("POST", "/run", run_body)
    status, content = call(run_environ, run_body)
    assert status == 202, status
    action_id = json.loads(content)["action_id"]
    # The start-up heap out of the collector's way: else one full collection
    # of it, landing in or out of the counted requests, moves a figure by ~3 %.
    gc.collect()
    gc.freeze()
    requests = {
        "introspect": (environ("GET", "/"), lambda n: b"", 200),
        "status": (environ("GET", f"/{action_id}/status"), lambda n: b"", 200),
        "run": (  # a fresh request_id each time: every request creates an action
            run_environ,
            lambda n: b'{"request_id": "bench-%d", "body": {"utc_offset": 5.5}}' % n,
            202,
        ),
    }
    for scenario in scenarios:
        template, body, expected = requests[scenario]
        for n in range(n2):
            if n == n1:
                dump(f"{scenario}-n1".encode())
            status, _ = call(template, body(n))
            if status != expected:
                raise SystemExit(f"{scenario}: HTTP {status}, expected {expected}")
        dump(f"{scenario}-n2".encode())


# --- the driver -----------------------------------------------------------------
_HELPER_C = """
#include <valgrind/callgrind.h>
void dump_stats(const char *name) { CALLGRIND_DUMP_STATS_AT(name); }
"""


def _build_helper(workdir: Path) -> Path:
    """A two-line shared library issuing callgrind's dump request (client
    requests are machine instructions: Python cannot issue them itself)."""
    source, library = workdir / "dump.c", workdir / "dump.so"
    source.write_text(_HELPER_C)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(library), str(source)], check=True)
    return library


def measure(source: Path, scenarios: list[str], n1: int, n2: int, workdir: Path,
            helper: Path, tag: str, store: str = "memory") -> dict[str, float]:
    """Instructions per request of each scenario, for the app in ``source``."""
    with contextlib.ExitStack() as stack:
        if store == "sqlite":
            url = f"sqlite:///{workdir / f'{tag}.db'}"
        elif store == "postgresql":
            from tests.postgres import temporary_schema

            url = stack.enter_context(temporary_schema(PG_URL, "wt_callgrind"))
        else:
            url = "memory://"
        return _measure(source, scenarios, n1, n2, workdir, helper, tag, url)


def _measure(source: Path, scenarios: list[str], n1: int, n2: int, workdir: Path,
             helper: Path, tag: str, store_url: str) -> dict[str, float]:
    out = workdir / f"callgrind.{tag}.out"
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
           "BENCH_CALLGRIND_HELPER": str(helper), "BENCH_CALLGRIND_STORE": store_url,
           "BENCH_CALLGRIND_SET": json.dumps(SETTINGS)}
    for key in [k for k in env if k.startswith("FLASK_")]:
        del env[key]  # the tree's config.py and the overrides above, nothing else
    command = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
        f"--log-file={workdir / f'valgrind.{tag}.log'}",
        sys.executable, "-m", "bench.callgrind", "--serve", str(source),
        ",".join(scenarios), str(n1), str(n2),
    ]
    with open(workdir / f"app.{tag}.stderr", "wb") as app_log:  # the request log lines
        subprocess.run(command, cwd=ROOT, env=env, check=True, stderr=app_log)
    counted: dict[str, int] = {}
    for dump in workdir.glob(f"callgrind.{tag}.out*"):
        text = dump.read_text()
        trigger = re.search(r"^desc: Trigger: Client Request: (\S+)", text, re.MULTILINE)
        summary = re.search(r"^summary: (\d+)", text, re.MULTILINE)
        if trigger and summary:
            counted[trigger.group(1)] = int(summary.group(1))
        dump.unlink()
    return {s: counted[f"{s}-n2"] / (n2 - n1) for s in scenarios}


def _compile(source: Path) -> None:
    """Byte-compile the tree (and warm the venv's caches) outside valgrind, so
    that no counted process compiles anything."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(source / "app"), str(source / "config.py")],
        check=True,
    )
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(
        [sys.executable, "-m", "bench.callgrind", "--serve", str(source), ",".join(SCENARIOS),
         "0", "1"],
        cwd=ROOT, env=env, check=True, stderr=subprocess.DEVNULL,
    )


def _checkout(ref: str, into: Path) -> None:
    subprocess.run(
        ["git", "worktree", "add", "--detach", "--quiet", str(into), ref], cwd=ROOT, check=True
    )


def _remove_checkout(path: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", metavar="REF", action="append", default=[],
                        help="also measure this commit (repeatable)")
    parser.add_argument("--tree", metavar="REF",
                        help="measure this commit in place of the working tree")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--store", choices=("memory", "sqlite", "postgresql"), default="memory")
    parser.add_argument("--n1", type=int, default=100)
    parser.add_argument("--n2", type=int, default=600)
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                        help="a setting for every side (a JSON value, else text), e.g. "
                        "--set LOG_LEVEL=WARNING --set 'GET_RATE_LIMIT=\"\"'")
    parser.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for pair in args.set:
        key, _, value = pair.partition("=")
        try:
            SETTINGS[key] = json.loads(value)
        except json.JSONDecodeError:
            SETTINGS[key] = value
    if args.serve:
        _serve(args.serve[0], args.serve[1].split(","), int(args.serve[2]), int(args.serve[3]))
        return 0
    if not 0 < args.n1 < args.n2:
        parser.error("need 0 < --n1 < --n2")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install -y valgrind)")
    scenarios = args.scenario or list(SCENARIOS)
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as tmp:
        workdir = Path(tmp)
        sides: dict[str, Path] = {"tree": ROOT}
        checkouts: list[Path] = []
        for index, ref in enumerate(([args.tree] if args.tree else []) + args.against):
            checkouts.append(workdir / f"checkout{index}")
            _checkout(ref, checkouts[-1])
            sides[ref if index or not args.tree else "tree"] = checkouts[-1]
        try:
            helper = _build_helper(workdir)
            for source in sides.values():
                _compile(source)
            figures: dict[tuple[str, str], list[float]] = {}
            # Instruction counts do not depend on what else runs: the sides of
            # a round run side by side, one process each.
            with ThreadPoolExecutor(max_workers=2) as pool:
                for round_no in range(1, args.rounds + 1):
                    jobs = {
                        name: pool.submit(measure, source, scenarios, args.n1, args.n2,
                                          workdir, helper, f"{index}.{round_no}", args.store)
                        for index, (name, source) in enumerate(sides.items())
                    }
                    for name, job in jobs.items():
                        for scenario, value in job.result().items():
                            figures.setdefault((name, scenario), []).append(value)
                            print(f"round {round_no} {scenario:<10} {name:<12} {value:>12,.0f}",
                                  file=sys.stderr, flush=True)
        finally:
            for checkout in checkouts:
                _remove_checkout(checkout)
    _print_table(figures, list(sides), scenarios, args)
    return 0


def _print_table(
    figures: dict[tuple[str, str], list[float]], sides: list[str], scenarios: list[str],
    args: argparse.Namespace,
) -> None:
    print(f"\ninstructions per request (callgrind, {args.n2} - {args.n1} requests, "
          f"median of {args.rounds} round(s))\n")
    header = ["scenario", *sides, *(f"tree / {side}" for side in sides[1:])]
    print("| " + " | ".join(header) + " |")
    print("|---" + "|---:" * (len(header) - 1) + "|")
    for scenario in scenarios:
        medians = [statistics.median(figures[(side, scenario)]) for side in sides]
        cells = [f"{m:,.0f}" for m in medians]
        cells += [f"{medians[0] / other:.3f}" for other in medians[1:]]
        print(f"| {scenario} | " + " | ".join(cells) + " |")
    if args.rounds > 1:
        print("\nper round:")
        for (side, scenario), values in figures.items():
            spread = (max(values) - min(values)) / statistics.median(values)
            print(f"  {scenario:<10} {side:<12} "
                  + "  ".join(f"{v:,.0f}" for v in values) + f"   (spread {spread:.2%})")


if __name__ == "__main__":
    sys.exit(main())
