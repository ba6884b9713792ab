"""Rate limits on the production server (today's launcher: gunicorn with the
production settings, tests/server.py), 2 worker processes on a SQLite store,
sharing a real Redis: one caller's rate holds across processes (N runs in
all, not N per worker), and Redis stopped and started under traffic never
gives a 5xx.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.redis_server import RedisServer
from tests.server import serve_process

pytestmark = pytest.mark.e2e


def env(store: Path, redis_url: str, **rates: str) -> dict[str, str]:
    return {
        "FLASK_STORE_URL": f"sqlite:///{store}",
        "FLASK_RATE_LIMIT_STORAGE_URL": redis_url,
        **{f"FLASK_{key}": value for key, value in rates.items()},
    }


def dev_caller() -> dict[str, str]:
    """A dev-mode caller of its own (the session's Redis is shared by tests)."""
    return {"Authorization": f"Bearer dev-token-rl{uuid.uuid4().hex[:12]}"}


def post_run(url: str, headers: dict[str, str], request_id: str | None = None) -> Any:
    body = {"request_id": request_id or str(uuid.uuid4()), "body": {"utc_offset": 0}}
    return requests.post(url + "/run", json=body, headers=headers, timeout=30)


def run_pids(output: Path) -> Counter[int]:
    """How many /run requests each worker process has logged."""
    pids: Counter[int] = Counter()
    for line in output.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("route") == "/run":
                pids[record["process"]] += 1
    return pids


def metric(url: str, name: str) -> float:
    for line in requests.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no sample {name}")


def test_the_run_rate_holds_across_two_workers(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    output = tmp_path / "server.log"
    caller = dev_caller()
    settings = env(tmp_path / "actions.db", redis_server.url, RUN_RATE_LIMIT="5/day",
                   GET_RATE_LIMIT="")
    with serve_process(settings, workers=2, output_path=output) as (url, _):
        answers: list[Any] = []
        with ThreadPoolExecutor(max_workers=8) as pool:
            # Until each worker has answered more than the rate: with counts
            # per process, each would then have let 5 through.
            for _ in range(30):
                answers += pool.map(lambda _: post_run(url, caller), range(8))
                pids = run_pids(output)
                if len(pids) == 2 and min(pids.values()) > 5:
                    break
        assert len(pids) == 2 and min(pids.values()) > 5, pids
        statuses = Counter(a.status_code for a in answers)
        assert statuses == {202: 5, 429: len(answers) - 5}, statuses
        refused = [a for a in answers if a.status_code == 429]
        assert all(a.json()["code"] == "TooManyRequests" for a in refused)
        assert all(int(a.headers["Retry-After"]) >= 1 for a in refused)
        assert all(a.headers["RateLimit-Policy"] == '"run";q=5;w=86400' for a in answers)

        # Repeats of an acknowledged run are answered by either worker.
        first = next(a.json() for a in answers if a.status_code == 202)
        request_id = _request_id_of(first, answers)
        with ThreadPoolExecutor(max_workers=4) as pool:
            repeats = list(pool.map(lambda _: post_run(url, caller, request_id), range(12)))
        assert {r.status_code for r in repeats} == {200}
        assert {r.json()["action_id"] for r in repeats} == {first["action_id"]}

        # Another caller has a rate of its own; the metrics add up every worker's 429s.
        assert post_run(url, dev_caller()).status_code == 202
        assert metric(url, 'rate_limited_total{reason="run_rate"}') == len(refused)


def _request_id_of(status: dict[str, Any], answers: list[Any]) -> str:
    for answer in answers:
        if answer.status_code == 202 and answer.json()["action_id"] == status["action_id"]:
            return str(json.loads(answer.request.body)["request_id"])
    raise AssertionError("no such answer")


def test_redis_stopped_and_started_under_traffic(
    tmp_path: Path, own_redis_server: RedisServer
) -> None:
    caller = dev_caller()
    settings = env(tmp_path / "actions.db", own_redis_server.url, RUN_RATE_LIMIT="3/day",
                   GET_RATE_LIMIT="100000/day")
    with serve_process(settings, workers=2) as (url, _):
        seen: list[tuple[str, int]] = []  # (phase, status)
        phase = ["up"]
        stop = threading.Event()
        failures: list[BaseException] = []

        def traffic() -> None:
            with requests.Session() as session:
                while not stop.is_set():
                    started_in = phase[0]  # a request sent before a change is not after it
                    try:
                        body = {"request_id": str(uuid.uuid4()), "body": {"utc_offset": 0}}
                        ran = session.post(url + "/run", json=body, headers=caller, timeout=30)
                        listed = session.get(url + "/actions", headers=caller, timeout=30)
                    except requests.RequestException as error:
                        failures.append(error)
                        return
                    seen.append((started_in, ran.status_code))
                    seen.append((started_in, listed.status_code))
                    time.sleep(0.01)

        def wait_for(what: str, status: int, seconds: float = 30) -> None:
            deadline = time.monotonic() + seconds
            while (phase[0], status) not in seen and time.monotonic() < deadline:
                assert not failures, failures
                time.sleep(0.05)
            assert (phase[0], status) in seen, f"no {status} while {what}: {Counter(seen)}"

        thread = threading.Thread(target=traffic)
        thread.start()
        try:
            wait_for("Redis is up", 429)
            own_redis_server.stop()
            phase[0] = "down"
            seen_before = len(seen)
            wait_for("Redis is down", 202)  # over the rate, served: fail open
            while len(seen) < seen_before + 40 and not failures:  # a while longer
                time.sleep(0.05)
            phase[0] = "starting"  # Redis may answer before start() returns
            own_redis_server.start()
            phase[0] = "back"
            wait_for("Redis is back", 429)
        finally:
            stop.set()
            thread.join(timeout=60)
        assert not failures, failures
        assert not [s for _, s in seen if s >= 500], Counter(seen)
        assert {s for p, s in seen if p == "down"} <= {200, 202}, Counter(seen)
        assert metric(url, "rate_limit_storage_errors_total") >= 1
        assert metric(url, "rate_limit_unchecked_total") >= 20
