"""Several worker processes (python -m app --workers 2) on one SQL store, over
real HTTP.

With the memory store each worker has its own dict; with SQLite or PostgreSQL
every worker sees every action, a request_id starts one action whichever
workers the retries land on, and a kill -9 of the whole server loses no
action it acknowledged.
"""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from app.store import open_store
from tests.helpers import DEV_ALICE as ALICE
from tests.postgres import temporary_schema
from tests.server import serve, serve_process
from tests.store_fixtures import _SESSION

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Each SQL store in turn (the memory store is per worker), for the
    module: a fresh SQLite file, a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('store')}/actions.db"
        return
    server = request.getfixturevalue("postgres_server")
    with temporary_schema(server, prefix=_SESSION) as url:
        yield url


def server_env(store_url: str) -> dict[str, str]:
    return {
        "FLASK_STORE_URL": store_url,
        "FLASK_MIN_DELAY_SECONDS": "600",
        "FLASK_MAX_DELAY_SECONDS": "600",
    }


@pytest.fixture(scope="module")
def two_workers(shared_store_url: str, shared_rates: dict[str, str]) -> Iterator[str]:
    """One two-worker server per store, shared by the tests of this module."""
    with serve({**server_env(shared_store_url), **shared_rates}, workers=2) as url:
        yield url


def run(url: str, request_id: str) -> requests.Response:
    body = {"request_id": request_id, "body": {"utc_offset": 1}}
    return requests.post(url + "/run", json=body, headers=ALICE, timeout=30)


def test_every_worker_sees_every_action(two_workers: str) -> None:
    started = run(two_workers, str(uuid.uuid4()))
    assert started.status_code == 202
    action_id = started.json()["action_id"]
    codes = [
        requests.get(f"{two_workers}/{action_id}/status", headers=ALICE, timeout=30).status_code
        for _ in range(200)
    ]
    assert codes == [200] * 200


def test_concurrent_retries_of_one_request_id_start_one_action(two_workers: str) -> None:
    request_id = str(uuid.uuid4())
    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda _: run(two_workers, request_id), range(20)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 19 + [202]
    assert len({r.json()["action_id"] for r in responses}) == 1


def test_kill_9_loses_no_acknowledged_action(sql_url: str, shared_rates: dict[str, str]) -> None:
    """Its own server (it kills it) on its own store."""
    store_url = sql_url
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    enough = threading.Event()

    def client(url: str) -> None:
        for _ in range(500):  # bounded; normally stopped by the kill long before
            if stop.is_set():
                return
            try:
                response = run(url, str(uuid.uuid4()))
            except requests.RequestException:
                # A slow answer under load is not the end; the kill is.
                if stop.is_set():
                    return
                continue
            if response.status_code == 202:
                with lock:
                    acknowledged.append(response.json()["action_id"])
                    if len(acknowledged) >= 60:
                        enough.set()

    with serve_process(
        # one caller floods runs: a rate far above the default
        {**server_env(store_url), **shared_rates, "FLASK_RUN_RATE_LIMIT": "100000/minute"},
        workers=2,
    ) as (url, process):
        clients = [threading.Thread(target=client, args=(url,)) for _ in range(4)]
        for thread in clients:
            thread.start()
        enough.wait(timeout=120)
        os.killpg(process.pid, signal.SIGKILL)  # launcher and workers, mid-traffic
        process.wait(timeout=30)
        stop.set()
        for thread in clients:
            thread.join(timeout=60)

    with lock:
        acked = list(acknowledged)
    assert len(acked) >= 60
    store = open_store(store_url)
    try:
        missing = [action_id for action_id in acked if store.get(action_id) is None]
    finally:
        store.close()
    assert missing == []
