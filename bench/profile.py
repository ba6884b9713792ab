"""Profile the service's worker under wrk load with py-spy (sampling).

    .venv/bin/python -m bench.profile --scenario status [--seconds 10] [--threads 4]

The production server (``python -m app``, memory store, dev auth) loaded by
wrk -t1 -c4 with keep-alive, the requests spread over many identities as in
bench.ab (one identity at thousands a second would measure the 429 path).
py-spy samples the worker's threads, waiting ones included (``--idle``), so
the shares show where a request's wall time goes. Prints the functions with
the most samples (inclusive and own) and writes the collapsed stacks to
bench/results/profile-<scenario>.txt (flamegraph input).
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import threading
from pathlib import Path

import requests

from bench.load import Request, require_wrk, run_wrk
from tests.server import serve_process, settled_workers

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = ("introspect", "status", "run")
RUN_BODY = '{"request_id": "%s", "body": {"utc_offset": 5.5}}'


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", choices=SCENARIOS, default="status")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=4, help="the server's THREADS")
    parser.add_argument("--identities", type=int, default=1000)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    wrk_bin = require_wrk()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"profile-{args.scenario}.txt"
    tokens = [f"dev-token-bench-{i}" for i in range(args.identities)]
    env = {"FLASK_AUTH_MODE": "dev", "FLASK_MIN_DELAY_SECONDS": "86400",
           "FLASK_MAX_DELAY_SECONDS": "172800", "THREADS": str(args.threads)}
    with serve_process(env, workers=1) as (url, launcher):
        request = Request(method="POST", path="/run", body=RUN_BODY)
        if args.scenario == "introspect":
            request = Request()
        elif args.scenario == "status":
            session = requests.Session()
            request = Request(paths=tuple(
                "/{}/status".format(session.post(
                    url + "/run", json={"request_id": "profile", "body": {"utc_offset": 1}},
                    headers={"Authorization": f"Bearer {token}"}, timeout=10,
                ).json()["action_id"])
                for token in tokens
            ))
        (pid,) = settled_workers(launcher.pid)
        spy = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
               "--duration", str(args.seconds), "--rate", "500", "--format", "raw",
               "--idle", "--output", str(out), "--nonblocking"]
        load = threading.Thread(target=run_wrk, args=(wrk_bin, url, request), kwargs={
            "token": tokens, "seconds": args.seconds + 2, "connections": 4})
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
