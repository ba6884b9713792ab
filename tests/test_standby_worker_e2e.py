"""app.workers.StandbyThreadsWorker under real gunicorn, real HTTP (production
settings). tests/test_slow_auth_e2e.py checks the standby threads keep the
others going while one request waits on a slow Globus Auth; here: that it is
the worker gunicorn really runs, slow and silent clients, SIGTERM with a
request in flight, and workers recycled after max_requests."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.helpers import DEV_ALICE
from tests.server import gunicorn_process, settled_workers

pytestmark = pytest.mark.e2e


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def run_request(body: bytes) -> bytes:
    return (
        b"POST /run HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        + f"Authorization: {DEV_ALICE['Authorization']}\r\n".encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )


def run_body() -> bytes:
    return json.dumps({"request_id": uuid.uuid4().hex, "body": {"utc_offset": 1}}).encode()


def read_all(sock: socket.socket) -> bytes:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def test_production_settings_run_the_standby_worker_not_gthread(tmp_path: Path):
    # gunicorn swaps any class named *SyncWorker for gthread when threads > 1.
    log = tmp_path / "server.log"
    with gunicorn_process(output_path=log) as (url, _):
        assert requests.get(url + "/", headers=DEV_ALICE, timeout=10).status_code == 200
    text = log.read_text()
    assert "Using worker: app.workers.StandbyThreadsWorker" in text, text


def test_silent_and_half_sent_clients_hold_one_thread_each_then_are_dropped(tmp_path: Path):
    log = tmp_path / "server.log"
    with gunicorn_process(output_path=log, extra_args=("--timeout", "2")) as (url, _):
        silent = connect(url)  # connects, sends nothing
        half = connect(url)
        half.sendall(b"GET / HTTP/1.1\r\nHost: te")  # and stops there
        time.sleep(0.2)  # both taken by a thread by now
        # Two threads are held; the other two answer.
        for _ in range(5):
            answer = requests.get(url + "/", headers=DEV_ALICE, timeout=10)
            assert answer.status_code == 200
        silent.setblocking(False)
        with pytest.raises(BlockingIOError):
            silent.recv(1)  # still open: the request above was not answered after it
        silent.setblocking(True)
        # After the worker timeout (2 s) both are closed without an answer...
        assert read_all(silent) == b""
        assert read_all(half) == b""
        # ... and the threads are free again.
        assert requests.get(url + "/", headers=DEV_ALICE, timeout=10).status_code == 200
    text = log.read_text()
    assert "Traceback" not in text and '"level":"ERROR"' not in text, text


def test_sigterm_lets_the_request_in_flight_finish(tmp_path: Path):
    body = run_body()
    with gunicorn_process(output_path=tmp_path / "server.log") as (url, master):
        sock = connect(url)
        sock.sendall(run_request(body))  # headers now, the body after SIGTERM
        time.sleep(0.3)
        os.kill(master.pid, signal.SIGTERM)
        time.sleep(0.3)
        sock.sendall(body)
        answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 202 "), answer
        assert master.wait(timeout=20) == 0


def test_workers_recycled_after_max_requests_answer_every_request(sqlite_url: str):
    env = {"FLASK_STORE_URL": sqlite_url}
    args = ("--max-requests", "10", "--max-requests-jitter", "0")
    with gunicorn_process(env, workers=2, extra_args=args) as (url, master):
        before = settled_workers(master.pid)
        codes = [
            requests.post(url + "/run", data=run_body(), timeout=10,
                          headers={**DEV_ALICE, "Content-Type": "application/json"}).status_code
            for _ in range(60)
        ]
        assert codes == [202] * 60
        assert settled_workers(master.pid).isdisjoint(before)
