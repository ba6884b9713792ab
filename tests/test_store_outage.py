"""PostgreSQL stopped and started again under traffic, directly and through
PgBouncer in transaction pooling mode (issue 15).

Each test starts its own cluster (initdb from the installed binaries, on a
free port) so that it may stop it, and the service (python -m app) with 2
workers. During the outage every answer is a 503 JSON with Retry-After (never
a 500, never a dropped connection); within 10 s of PostgreSQL being back
every request succeeds again, without restarting the service; every action
acknowledged before, during or after is still there. Through PgBouncer the
store runs with ``prepared_statements=off`` (Debian's PgBouncer 1.18 cannot
keep protocol-level prepared statements in transaction mode); the lifecycle
and the request_id race are checked there too.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from app.store import open_store
from tests.helpers import DEV_ALICE as ALICE
from tests.postgres import Cluster, pgbouncer, private_cluster
from tests.server import serve

pytestmark = pytest.mark.e2e
BACK_WITHIN_SECONDS = 10
# Twice PgBouncer's query_wait_timeout (3 s, tests/postgres.py): a request that
# waits it out in full is still answered (503) before the database is back.
OUTAGE_SECONDS = 6


def server_env(store_url: str) -> dict[str, str]:
    return {
        "FLASK_STORE_URL": store_url,
        "FLASK_MIN_DELAY_SECONDS": "600",
        "FLASK_MAX_DELAY_SECONDS": "600",
        # One caller's traffic, far over any rate: this tests the store, not the rates.
        "FLASK_RUN_RATE_LIMIT": "",
        "FLASK_GET_RATE_LIMIT": "",
    }


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with private_cluster() as started:
        yield started


@pytest.fixture
def bouncer(cluster: Cluster) -> Iterator[str]:
    if shutil.which("pgbouncer") is None and not Path("/usr/sbin/pgbouncer").exists():
        pytest.fail("pgbouncer is not installed (scripts/test installs Debian's package or "
                    "says how)")
    with pgbouncer(cluster) as url:
        yield f"{url}?prepared_statements=off"


def run(url: str, request_id: str | None = None,
        session: requests.Session | None = None) -> requests.Response:
    body = {"request_id": request_id or str(uuid.uuid4()), "body": {"utc_offset": 1}}
    return (session or requests).post(url + "/run", json=body, headers=ALICE, timeout=15)


@dataclass
class Traffic:
    """Clients running and polling actions; every answer kept with its time."""

    url: str
    # (started, finished, run or status, the answer)
    answers: list[tuple[float, float, str, requests.Response]] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self) -> None:
        # One pooled connection a client, as real clients keep (answers kept
        # below would otherwise keep each one's connection open).
        session = requests.Session()
        mine: list[str] = []
        n = 0
        while not self.stop.is_set():
            n += 1
            polling = bool(mine) and n % 2 == 0
            started = time.monotonic()
            try:
                if polling:
                    response = session.get(
                        f"{self.url}/{mine[n % len(mine)]}/status", headers=ALICE, timeout=15
                    )
                else:
                    response = run(self.url, session=session)
            except requests.RequestException as error:
                with self.lock:  # a dropped connection or a timeout: never allowed
                    self.failures.append(f"{type(error).__name__}: {error}")
                continue
            kind = "status" if polling else "run"
            with self.lock:
                self.answers.append((started, time.monotonic(), kind, response))
                if kind == "run" and response.status_code == 202:
                    self.acknowledged.append(response.json()["action_id"])
                    mine.append(response.json()["action_id"])
            if response.status_code == 503:
                time.sleep(0.05)

    def check_answer(self, response: requests.Response) -> None:
        if response.status_code in (200, 202):
            return
        assert response.status_code == 503, (response.status_code, response.text)
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.json()["code"] == "StoreUnavailable", response.text
        assert int(response.headers["Retry-After"]) > 0


def stop_and_start_under_traffic(cluster: Cluster, url: str) -> None:
    traffic = Traffic(url)
    clients = [threading.Thread(target=traffic.client) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        time.sleep(2)
        stopping = time.monotonic()
        cluster.stop()
        stopped = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        starting = time.monotonic()
        cluster.start()
        back = time.monotonic()
        time.sleep(BACK_WITHIN_SECONDS + 3)
    finally:
        traffic.stop.set()
        for thread in clients:
            thread.join(timeout=60)
    assert traffic.failures == []
    answers = list(traffic.answers)
    for *_, response in answers:
        traffic.check_answer(response)

    def codes(first: float, last: float) -> list[int]:
        """Codes of the answers to requests sent and answered between the two."""
        return [r.status_code for sent, done, _, r in answers if first < sent and done < last]

    before, during = codes(0, stopping), codes(stopped, starting)
    settled = [(kind, r.status_code) for sent, _, kind, r in answers
               if sent > back + BACK_WITHIN_SECONDS]
    assert before and set(before) <= {200, 202}, sorted(set(before))
    assert during and set(during) == {503}, sorted(set(during))
    assert len(settled) >= 10, settled
    assert {code for _, code in settled} <= {200, 202}, settled
    assert {kind for kind, _ in settled} == {"run", "status"}
    # Every acknowledged action is still there, over HTTP and in the store.
    assert len(traffic.acknowledged) >= 10
    for action_id in traffic.acknowledged:
        response = requests.get(f"{url}/{action_id}/status", headers=ALICE, timeout=15)
        assert response.status_code == 200, (action_id, response.text)


def test_postgresql_stopped_and_started_under_traffic(cluster: Cluster) -> None:
    with serve(server_env(cluster.url), workers=2) as url:
        stop_and_start_under_traffic(cluster, url)
    store = open_store(cluster.url)
    try:
        assert len(store) >= 10
    finally:
        store.close()


def test_through_pgbouncer_lifecycle_race_and_restart(cluster: Cluster, bouncer: str) -> None:
    with serve(server_env(bouncer), workers=2) as url:
        # The lifecycle: run, status, cancel, release, then gone.
        started = run(url, "lifecycle")
        assert started.status_code == 202, started.text
        action_id = started.json()["action_id"]
        status = requests.get(f"{url}/{action_id}/status", headers=ALICE, timeout=15)
        assert status.status_code == 200 and status.json()["status"] == "ACTIVE"
        cancelled = requests.post(f"{url}/{action_id}/cancel", headers=ALICE, timeout=15)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "FAILED"
        released = requests.post(f"{url}/{action_id}/release", headers=ALICE, timeout=15)
        assert released.status_code == 200, released.text
        gone = requests.get(f"{url}/{action_id}/status", headers=ALICE, timeout=15)
        assert gone.status_code == 404
        # 20 racing copies of one request_id on both workers start one action.
        request_id = str(uuid.uuid4())
        with ThreadPoolExecutor(20) as pool:
            responses = list(pool.map(lambda _: run(url, request_id), range(20)))
        assert sorted(r.status_code for r in responses) == [200] * 19 + [202]
        assert len({r.json()["action_id"] for r in responses}) == 1
        # PostgreSQL behind PgBouncer stopped and started under traffic.
        stop_and_start_under_traffic(cluster, url)
