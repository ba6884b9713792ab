"""``python -m app`` with two workers: metrics add up across workers
(multiprocess mode), survive a worker's death (it is started again), start
from zero; limits hold over real HTTP; the default number of workers per
store. Two workers need a shared store (SQLite here); only stateless calls
are made."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from app.__main__ import SQL_WORKERS
from tests.helpers import DEV_ALICE as ALICE
from tests.server import serve, serve_process, settled_workers

pytestmark = pytest.mark.e2e
STALE = 1000


def served_root(samples) -> float:
    return sum(
        s.value for s in samples
        if s.name == "http_requests_total"
        and s.labels.get("route") == "/" and s.labels.get("status") == "200"
    )


def scraped(url: str) -> float:
    text = requests.get(url + "/metrics", timeout=5).text
    return served_root(s for f in text_string_to_metric_families(text) for s in f.samples)


def per_worker(metrics_dir: Path, scratch: Path) -> dict[str, float]:
    """Requests to / counted by each worker alone (its own counter file)."""
    counts = {}
    for db in metrics_dir.glob("counter_*.db"):
        if db.stat().st_size == 0:  # being created by a starting worker
            continue
        one = scratch / db.stem
        one.mkdir(exist_ok=True)
        shutil.copy(db, one / db.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(one))
        counts[db.stem] = served_root(s for f in registry.collect() for s in f.samples)
    return counts


def write_stale_metrics(metrics_dir: Path) -> None:
    """What an earlier run (or a crash) leaves behind: must not be added in."""
    code = (
        "from prometheus_client import Counter\n"
        "Counter('http_requests', 'x', ['route', 'method', 'status'])"
        f".labels('/', 'GET', '200').inc({STALE})\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("metrics")


@pytest.fixture(scope="module")
def url(metrics_dir, tmp_path_factory, shared_rates):
    write_stale_metrics(metrics_dir)
    assert list(metrics_dir.glob("counter_*.db"))
    store = f"sqlite:///{tmp_path_factory.mktemp('store') / 'actions.db'}"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "FLASK_STORE_URL": store,
           **shared_rates}
    with serve(env, workers=2) as base:
        yield base


def get_root(url: str) -> int:
    return requests.get(url + "/", headers=ALICE, timeout=5).status_code  # new connection


def test_metrics_add_up_across_workers_and_survive_a_worker(url, metrics_dir, tmp_path):
    assert scraped(url) == 0  # the stale file of an earlier run was cleared at start
    sent = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(10):  # bounded: at most 400 requests
            statuses = list(pool.map(lambda _: get_root(url), range(40)))
            assert statuses == [200] * 40
            sent += 40
            if sum(1 for n in per_worker(metrics_dir, tmp_path).values() if n) >= 2:
                break
    counts = per_worker(metrics_dir, tmp_path)
    assert sum(1 for n in counts.values() if n) >= 2, counts  # both workers served
    # Whichever worker answers /metrics, it reports every worker's requests.
    assert [scraped(url) for _ in range(6)] == [sent] * 6

    # A worker dies: its counts stay; the launcher starts a new one.
    victim = int(max(counts, key=counts.get).split("_")[1])
    os.kill(victim, signal.SIGKILL)
    # Until the new worker is up, connections queued at the dead one may be
    # reset (granian warns of it without net.ipv4.tcp_migrate_req): wait for
    # ten answers in a row, each reporting the dead worker's counts too.
    in_a_row, deadline = 0, time.monotonic() + 30
    while in_a_row < 10 and time.monotonic() < deadline:
        try:
            in_a_row = in_a_row + 1 if scraped(url) == sent else 0
        except requests.RequestException:
            in_a_row = 0
            time.sleep(0.2)
    assert in_a_row == 10
    assert get_root(url) == 200


def test_healthz_and_request_ids_over_http(url):
    response = requests.get(url + "/healthz", headers={"X-Request-ID": "probe-1"}, timeout=5)
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response.headers["X-Request-ID"] == "probe-1"


def test_oversized_bodies_are_413_json_even_chunked(url):
    big = b'{"request_id": "big", "body": {"utc_offset": 1}, "label": "' + b"x" * 70_000 + b'"}'
    headers = {**ALICE, "Content-Type": "application/json"}
    plain = requests.post(url + "/run", data=big, headers=headers, timeout=5)
    assert plain.status_code == 413 and plain.json()["code"]

    def chunks():
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    chunked = requests.post(url + "/run", data=chunks(), headers=headers, timeout=5)
    assert chunked.status_code == 413 and chunked.json()["code"]


def test_bodies_read_whole_in_pieces_or_refused_when_cut_short(url):
    """A body sent in pieces is read whole; a client that stops sending before
    its Content-Length (and says so: it shuts its side) is a 400 JSON (not a
    hang, not a 500). Only a cut-short request shuts its side: after a whole
    request, a half-closed connection gets no answer from granian (hyper
    closes on the end of input; granian has no setting for half-closes)."""
    parts = urlsplit(url)
    body = b'{"request_id": "pieces", "body": {"utc_offset": 2}}'

    def exchange(declared: int, pieces: list[bytes]) -> tuple[bytes, dict]:
        head = (f"POST /run HTTP/1.1\r\nHost: x\r\nAuthorization: {ALICE['Authorization']}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {declared}\r\n"
                "Connection: close\r\n\r\n")
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(head.encode())
            for piece in pieces:
                time.sleep(0.05)
                sock.sendall(piece)
            if sum(map(len, pieces)) < declared:
                sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        status_line, _, rest = answer.partition(b"\r\n")
        return status_line, json.loads(rest.partition(b"\r\n\r\n")[2])

    status_line, document = exchange(len(body), [body[:10], body[10:30], body[30:]])
    assert status_line.startswith(b"HTTP/1.1 202 ") and document["status"] == "ACTIVE"
    status_line, document = exchange(len(body) + 20, [body])
    assert status_line.startswith(b"HTTP/1.1 400 "), status_line
    assert set(document) == {"code", "description"}


def test_default_workers_per_store(sqlite_url, shared_rates):
    """One worker on the memory store (its actions live in it), one per core
    (SQL_WORKERS) on a shared store, unless --workers or WEB_CONCURRENCY say
    otherwise."""
    with serve_process({"WEB_CONCURRENCY": ""}, workers=None) as (_, launcher):
        assert len(settled_workers(launcher.pid)) == 1
    env = {"WEB_CONCURRENCY": "", "FLASK_STORE_URL": sqlite_url, **shared_rates}
    with serve_process(env, workers=None) as (_, launcher):
        assert len(settled_workers(launcher.pid)) == SQL_WORKERS
    with serve_process({**env, "WEB_CONCURRENCY": "3"}, workers=None) as (_, launcher):
        assert len(settled_workers(launcher.pid)) == 3
