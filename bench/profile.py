"""Profile the service's worker under wrk load with py-spy (sampling).

    .venv/bin/pip install py-spy==0.4.3   # pinned in requirements-dev.txt
    .venv/bin/python -m bench.profile --scenario run [--seconds 10]

Prints the functions with the most samples (inclusive) and writes the
collapsed stacks to bench/results/profile-<scenario>.txt (flamegraph input).
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import threading
from pathlib import Path

from bench.run import (
    PATHS,
    RESULTS,
    SCENARIOS,
    Store,
    ensure_wrk,
    scenario_call,
    service_env,
    start_action,
)
from tests.server import serve_process, settled_workers


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", choices=SCENARIOS, default="status")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    wrk_bin = ensure_wrk()
    paths = PATHS["classic"]
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"profile-{args.scenario}.txt"
    env = service_env(Store("memory", "memory://", False))
    with serve_process(env, workers=1) as (url, launcher):
        action_id = start_action(url, paths)
        (pid,) = settled_workers(launcher.pid)
        spy = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
               "--duration", str(args.seconds), "--rate", "500", "--format", "raw",
               "--output", str(out), "--nonblocking"]
        load = threading.Thread(target=scenario_call, args=(
            args.scenario, wrk_bin, url, args.seconds + 2, paths, action_id))
        load.start()
        subprocess.run(spy, check=True, capture_output=True)
        load.join()
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    print(f"{total} samples; inclusive share, top {args.top}:")
    for frame, n in inclusive.most_common(args.top):
        print(f"{100 * n / total:5.1f}%  {frame}")
    print("\nown time, top 20:")
    for frame, n in own.most_common(20):
        print(f"{100 * n / total:5.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
