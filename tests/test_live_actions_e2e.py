"""The live-action limit on the production server (python -m app), 2 worker
processes on PostgreSQL, rates counted in Redis and set far above this
traffic: concurrent runs of one identity at the limit minus one start
exactly one action (no overshoot), the limit holds across processes, a
repeat is answered by either worker, and a release makes room at once."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.postgres import temporary_schema
from tests.server import serve_process
from tests.store_fixtures import _SESSION, execute_directly

pytestmark = pytest.mark.e2e

LIMIT = 5
CONCURRENT = 20


class TwoWorkers:
    """The server's URL, its store, and which worker process served which request."""

    def __init__(self, url: str, store_url: str, output: Path) -> None:
        self.url, self.store_url, self.output = url, store_url, output

    def pids(self, request_ids: set[str]) -> Counter[int]:
        """How many of these requests (by X-Request-ID) each worker logged."""
        found: Counter[int] = Counter()
        for line in self.output.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("request_id") in request_ids:
                    found[record["process"]] += 1
        return found


@pytest.fixture(scope="module")
def two_workers(
    postgres_server: str, shared_rates: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TwoWorkers]:
    output = tmp_path_factory.mktemp("live") / "server.log"
    with temporary_schema(postgres_server, prefix=_SESSION) as store_url:
        env = {
            "FLASK_STORE_URL": store_url,
            "FLASK_MAX_LIVE_ACTIONS": str(LIMIT),
            "FLASK_MIN_DELAY_SECONDS": "1",
            "FLASK_MAX_DELAY_SECONDS": "1",
            "FLASK_RUN_RATE_LIMIT": "100000/minute",
            "FLASK_GET_RATE_LIMIT": "100000/minute",
            **shared_rates,
        }
        with serve_process(env, workers=2, output_path=output) as (url, _):
            yield TwoWorkers(url, store_url, output)


def new_caller() -> dict[str, str]:
    return {"Authorization": f"Bearer dev-token-live{uuid.uuid4().hex[:12]}"}


def post_run(url: str, caller: dict[str, str], request_id: str | None = None) -> Any:
    """One run on a new connection (the workers take turns accepting them),
    its X-Request-ID its request_id, so the log says which worker served it."""
    request_id = request_id or str(uuid.uuid4())
    body = {"request_id": request_id, "body": {"utc_offset": 0}}
    headers = {**caller, "X-Request-ID": request_id}
    return requests.post(url + "/run", json=body, headers=headers, timeout=30)


def assert_refused(response: Any) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["code"] == "TooManyRequests"
    assert f"{LIMIT} live actions" in response.json()["description"]
    assert int(response.headers["Retry-After"]) >= 1


def refusals_counted(url: str) -> float:
    """rate_limited_total{reason="live_actions"}, every worker's added up."""
    for line in requests.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith('rate_limited_total{reason="live_actions"} '):
            return float(line.split()[-1])
    raise AssertionError("no live_actions sample")


def live_actions(url: str, caller: dict[str, str]) -> int:
    listed = requests.get(url + "/actions?limit=100", headers=caller, timeout=30).json()
    return len(listed["actions"])


@contextmanager
def slow_inserts(store_url: str) -> Iterator[None]:
    """Each insert of an action takes 50 ms more (a trigger in the database),
    so that concurrent runs overlap between their count and their commit."""
    execute_directly(store_url, (
        "CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_sleep(0.05); RETURN NEW; END $$"
    ))
    execute_directly(store_url, "CREATE TRIGGER slow BEFORE INSERT ON actions "
                                "FOR EACH ROW EXECUTE FUNCTION slow_insert()")
    try:
        yield
    finally:
        execute_directly(store_url, "DROP FUNCTION slow_insert() CASCADE")


def test_concurrent_runs_at_the_limit_minus_one_start_one_action(two_workers: TwoWorkers) -> None:
    with slow_inserts(two_workers.store_url):
        concurrent_runs_start_one_action(two_workers)


def concurrent_runs_start_one_action(two_workers: TwoWorkers) -> None:
    url, caller = two_workers.url, new_caller()
    for _ in range(LIMIT - 1):
        assert post_run(url, caller).status_code == 202
    counted_before = refusals_counted(url)
    served_by: Counter[int] = Counter()
    rounds = 0
    while len(served_by) < 2 and rounds < 5:  # until both workers took part in a round
        rounds += 1
        barrier = threading.Barrier(CONCURRENT)
        ids = {str(uuid.uuid4()) for _ in range(CONCURRENT)}

        def one(request_id: str, barrier: threading.Barrier = barrier) -> Any:
            barrier.wait(timeout=30)
            return post_run(url, caller, request_id)

        with ThreadPoolExecutor(CONCURRENT) as pool:
            answers = list(pool.map(one, ids))
        statuses = Counter(a.status_code for a in answers)
        assert statuses == {202: 1, 429: CONCURRENT - 1}, statuses
        for answer in answers:
            if answer.status_code == 429:
                assert_refused(answer)
        assert live_actions(url, caller) == LIMIT
        served_by = two_workers.pids(ids)
        # Back to the limit minus one for the next round: release the new one
        # once it has completed (actions here take 1 s).
        started = next(a.json()["action_id"] for a in answers if a.status_code == 202)
        release_when_complete(url, caller, started)
    assert len(served_by) == 2, f"each of {rounds} rounds was served by one worker only"
    assert refusals_counted(url) - counted_before == rounds * (CONCURRENT - 1)


def release_when_complete(url: str, caller: dict[str, str], action_id: str) -> None:
    for _ in range(100):
        released = requests.post(f"{url}/{action_id}/release", headers=caller, timeout=30)
        if released.status_code == 200:
            return
        assert released.status_code == 409, released.text  # still running
        threading.Event().wait(0.1)
    raise AssertionError("the action never completed")


def test_the_limit_holds_across_workers_repeats_answered_release_makes_room(
    two_workers: TwoWorkers,
) -> None:
    url, caller = two_workers.url, new_caller()
    ids = [str(uuid.uuid4()) for _ in range(LIMIT)]
    started = [post_run(url, caller, request_id) for request_id in ids]
    assert [s.status_code for s in started] == [202] * LIMIT
    over = [str(uuid.uuid4()) for _ in range(10)]
    for request_id in over:
        assert_refused(post_run(url, caller, request_id))
    assert len(two_workers.pids(set(over))) == 2, "one worker only: not across processes"

    repeats = [post_run(url, caller, ids[0]) for _ in range(10)]
    assert {r.status_code for r in repeats} == {200}
    assert {r.json()["action_id"] for r in repeats} == {started[0].json()["action_id"]}

    release_when_complete(url, caller, started[0].json()["action_id"])
    assert post_run(url, caller).status_code == 202  # room at once, on whichever worker
    assert_refused(post_run(url, caller))
    assert post_run(url, new_caller()).status_code == 202  # another identity has its own
