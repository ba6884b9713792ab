"""One request stuck on a slow Globus Auth introspection does not hold up the
others, under the production defaults for each store (``python -m app``,
real HTTP, real Globus Auth mode: the service's globus-sdk client calls a
loopback Auth server, tests/loopback_auth.py, that answers one token after 3 s).

The other callers' tokens are cached in every worker beforehand (Auth has seen
each of them once per worker); while the uncached one waits, their runs,
statuses and introspections must all be answered, without asking Auth again.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.loopback_auth import SLOW_PREFIX, AuthCounters, loopback_auth, production_auth_env
from tests.server import serve_process, settled_workers

pytestmark = pytest.mark.e2e
SLOW_SECONDS = 3.0
CALLERS = 4
URL_FIXTURES = {"memory": None, "sqlite": "sqlite_url", "postgresql": "postgres_url"}


def socket_owner(local_port: int, pids: set[int]) -> int | None:
    """Which of ``pids`` holds the loopback TCP socket bound to ``local_port``."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == local_port:
            inodes.add(f"socket:[{fields[9]}]")
    for pid in pids:
        fds = Path(f"/proc/{pid}/fd")
        for fd in fds.iterdir():
            try:
                if os.readlink(fd) in inodes:
                    return pid
            except OSError:  # closed meanwhile
                continue
    return None


def call(url: str, token: str, what: str, action_id: str = "") -> requests.Response:
    """One request on a new connection (so it may reach any worker)."""
    headers = {"Authorization": f"Bearer {token}"}
    if what == "run":
        body = {"request_id": f"r-{uuid.uuid4()}", "body": {"utc_offset": 2}}
        return requests.post(url + "/run", json=body, headers=headers, timeout=30)
    path = f"/{action_id}/status" if what == "status" else "/"
    return requests.get(url + path, headers=headers, timeout=30)


def cache_in_every_worker(url: str, counters: AuthCounters, tokens: list[str],
                          workers: set[int]) -> None:
    """Send requests until every worker has asked Auth about every token."""
    with ThreadPoolExecutor(max_workers=2 * len(workers) + 2) as pool:
        for _ in range(100):  # bounded: at most 100 x 16 requests a token
            pending = [t for t in tokens if set(counters.of(t)) != workers]
            if not pending:
                return
            batch = [t for t in pending for _ in range(16)]
            assert all(r.status_code == 200 for r in pool.map(
                lambda t: call(url, t, "introspect"), batch))
    pytest.fail(f"tokens not cached in every worker {workers}: {counters.introspections}")


@pytest.fixture(params=list(URL_FIXTURES))
def store_url(request) -> str:  # type: ignore[no-untyped-def]
    fixture = URL_FIXTURES[request.param]
    return request.getfixturevalue(fixture) if fixture else "memory://"


@pytest.fixture
def served(
    store_url: str, shared_rates: dict[str, str]
) -> Iterator[tuple[str, set[int], AuthCounters]]:
    """The service under the production defaults (workers and threads as
    ``python -m app`` chooses them for this store); yields URL, worker pids
    and Auth, which knows which worker asked it about which token."""
    with loopback_auth(SLOW_SECONDS) as (auth_url, counters):
        env = {**production_auth_env(auth_url), "FLASK_STORE_URL": store_url,
               "FLASK_MIN_DELAY_SECONDS": "3600", "FLASK_MAX_DELAY_SECONDS": "7200",
               **shared_rates}  # rates in Redis: SQL stores serve several workers
        with serve_process(env, workers=None) as (url, launcher):
            workers = settled_workers(launcher.pid)
            counters.identify_caller = lambda port: socket_owner(port, workers)
            yield url, workers, counters


def test_cached_callers_are_answered_while_one_waits_on_a_slow_auth(served):
    url, workers, counters = served
    tokens = [f"cached-{n}-{uuid.uuid4().hex}" for n in range(CALLERS)]
    cache_in_every_worker(url, counters, tokens, workers)
    actions = {t: call(url, t, "run").json()["action_id"] for t in tokens}
    seen_before = {t: len(counters.of(t)) for t in tokens}

    slow_token = f"{SLOW_PREFIX}{uuid.uuid4().hex}"
    with ThreadPoolExecutor(max_workers=CALLERS + 1) as pool:
        slow = pool.submit(call, url, slow_token, "introspect")
        deadline = time.monotonic() + 10
        while not counters.of(slow_token):  # it is at Auth, waiting
            assert time.monotonic() < deadline, "the slow request never reached Auth"
            time.sleep(0.01)
        work = [(t, what) for t in tokens for what in ("introspect", "status", "run")] * 3
        answers = list(pool.map(lambda job: call(url, job[0], job[1], actions[job[0]]), work))
        still_waiting = not slow.done()
        slow_answer = slow.result(timeout=30)

    assert still_waiting, "the other requests were answered only after the slow one"
    assert [a.status_code for a in answers] == [202 if w == "run" else 200 for _, w in work]
    for (token, what), answer in zip(work, answers, strict=True):
        if what == "status":
            assert answer.json()["action_id"] == actions[token]
    # Answered from the cache: Auth was not asked about the cached tokens again.
    assert {t: len(counters.of(t)) for t in tokens} == seen_before
    # The slow one waited on Auth and then got its answer, not an error.
    assert slow_answer.status_code == 200
    assert len(counters.of(slow_token)) == 1
