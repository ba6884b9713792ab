"""The server itself, ``python -m app`` (granian), as real processes over
real HTTP without a proxy: every answer of the app is JSON with a request
id, what granian answers itself, slow clients, bodies cut short, the drain
on SIGTERM, and no secret in a request's WSGI environ."""

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

from tests.helpers import DEV_ALICE, DEV_BOB
from tests.server import serve_process

pytestmark = pytest.mark.e2e


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def read_all(sock: socket.socket) -> bytes:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def exchange(url: str, raw: bytes) -> tuple[bytes, bytes]:
    """Send ``raw``, read until the server closes: (head, body)."""
    with connect(url) as sock:
        sock.sendall(raw)
        head, _, body = read_all(sock).partition(b"\r\n\r\n")
    return head, body


def run_head(length: int) -> bytes:
    return (f"POST /run HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Authorization: {DEV_ALICE['Authorization']}\r\nContent-Length: {length}\r\n\r\n"
            ).encode()


def run_body() -> bytes:
    return json.dumps({"request_id": uuid.uuid4().hex, "body": {"utc_offset": 1}}).encode()


def server_lines(output: Path) -> list[dict]:
    return [json.loads(x) for x in output.read_text().splitlines() if x.startswith("{")]


def test_every_answer_of_the_app_is_json_with_a_request_id(dev_server):
    url = dev_server.url
    started = requests.post(url + "/run", headers=DEV_ALICE, timeout=5,
                            json={"request_id": uuid.uuid4().hex, "body": {"utc_offset": 1}})
    action = f"{url}/{started.json()['action_id']}"
    json_body = {**DEV_ALICE, "Content-Type": "application/json"}
    errors = [
        (401, requests.get(url + "/", timeout=5)),
        (403, requests.get(url + "/", headers={**DEV_ALICE, "X-Forwarded-For": "10.0.0.1"},
                           timeout=5)),  # dev mode serves no proxied client
        (404, requests.get(action + "/status", headers=DEV_BOB, timeout=5)),
        (404, requests.get(url + "/no/such/path", headers=DEV_ALICE, timeout=5)),
        (405, requests.get(url + "/run", headers=DEV_ALICE, timeout=5)),
        (400, requests.post(url + "/run", data=b"{not json", headers=json_body, timeout=5)),
        (400, requests.post(url + "/run", json={"request_id": "x", "body": {"utc_offset": 99}},
                            headers=DEV_ALICE, timeout=5)),
        (409, requests.post(action + "/release", headers=DEV_ALICE, timeout=5)),
        (413, requests.post(url + "/run", data=b"x" * 70_000, headers=json_body, timeout=5)),
    ]
    for status, response in errors:
        assert response.status_code == status, (status, response.text)
        assert response.headers["Content-Type"] == "application/json"
        assert set(response.json()) == {"code", "description"}, response.text
        assert len(response.headers["X-Request-ID"]) == 32
    assert started.status_code == 202 and started.headers["X-Request-ID"]
    assert requests.get(url + "/healthz", timeout=5).headers["X-Request-ID"]


def test_granian_answers_oversized_headers_and_malformed_http_itself(dev_server):
    """Before the app: 431 for headers over 64 KiB, 400 for what is not HTTP,
    each with an empty body, and the connection closed. Large headers under
    the limit reach the app."""
    url = dev_server.url
    head, body = exchange(url, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000
                          + b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ") and body == b"", head
    for malformed in (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", b"HELLO\r\n\r\n"):
        head, body = exchange(url, malformed)
        assert head.startswith(b"HTTP/1.1 400 ") and body == b"", head
    head, body = exchange(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                          b"X-Big: " + b"a" * 60_000 + b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and json.loads(body) == {"status": "ok"}


def test_slow_headers_do_not_stop_others_being_answered(dev_server):
    """16 connections send a request line, then one byte every 2 s: granian
    reads headers on its own I/O loop, so no request thread waits on them."""
    url = dev_server.url
    slow = [connect(url) for _ in range(16)]
    try:
        for sock in slow:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n")
        answered = []
        for _ in range(3):
            for sock in slow:
                sock.sendall(b"X")
            answered += [requests.get(url + "/", headers=DEV_ALICE, timeout=10).status_code
                         for _ in range(4)]
            answered.append(requests.post(url + "/run", data=run_body(), timeout=10, headers={
                **DEV_ALICE, "Content-Type": "application/json"}).status_code)
            time.sleep(2)
        assert answered == [200, 200, 200, 200, 202] * 3
    finally:
        for sock in slow:
            sock.close()


def test_a_body_cut_short_is_a_400_never_a_5xx(tmp_path: Path):
    """Half a body, then the client closes (or stops writing): the app sees a
    short read and answers 400, logged; no 5xx, no traceback."""
    output = tmp_path / "server.log"
    with serve_process(output_path=output) as (url, _):
        with connect(url) as sock:
            sock.sendall(run_head(100) + b'{"request_id": "gone"')
        with connect(url) as sock:
            sock.sendall(run_head(100) + b'{"request_id": "half"')
            sock.shutdown(socket.SHUT_WR)
            head, _, body = read_all(sock).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 ") and set(json.loads(body)) == {
            "code", "description"}
        deadline = time.monotonic() + 10
        while len([x for x in server_lines(output) if x.get("route") == "/run"]) < 2:
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.1)
    runs = [x for x in server_lines(output) if x.get("route") == "/run"]
    assert [x["status"] for x in runs] == [400, 400]
    assert "Traceback" not in output.read_text()


@pytest.mark.parametrize("authorization", ["", "Authorization: Bearer not-a-dev-token\r\n"])
def test_an_answer_given_before_the_body_arrived_says_the_connection_closes(
    dev_server, authorization
):
    """A POST whose body comes a moment after its headers (as urllib3 sends
    it), answered 401 without reading the body: the server closes that
    connection, so the answer must say so, or the client's next request on
    its kept-alive connection fails (a flaky ConnectionError in clients)."""
    body = run_body()
    head = (f"POST /run HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"{authorization}Content-Length: {len(body)}\r\n\r\n").encode()
    for _ in range(5):
        with connect(dev_server.url) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(head)
            time.sleep(0.05)
            sock.sendall(body)
            answer_head, _, _ = read_all(sock).partition(b"\r\n\r\n")
        assert answer_head.startswith(b"HTTP/1.1 401 ")
        assert b"\r\nconnection: close" in answer_head.lower()


def test_a_kept_alive_connection_stays_open_when_the_body_was_read(dev_server):
    """The other side of the test above: a run that reads its body keeps the
    connection for the next request."""
    with connect(dev_server.url) as sock:
        for _ in range(2):
            body = run_body()
            sock.sendall(run_head(len(body)))
            time.sleep(0.05)
            sock.sendall(body)
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 202 ")
            assert b"connection: close" not in answer.lower()
            head, _, rest = answer.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.lower().split(b"\r\n")
                              if line.startswith(b"content-length:")))
            while len(rest) < length:
                rest += sock.recv(65536)


def test_sigterm_drains_then_lets_the_request_in_flight_finish(tmp_path: Path):
    """SIGTERM to the launcher: /healthz answers 503 while the instance drains
    and everything else is served; then it stops accepting, the request in
    flight (its body sent after the drain) is answered, and it exits 0."""
    body = run_body()
    output = tmp_path / "server.log"
    with serve_process(output_path=output, extra_args=("--drain-seconds", "2")) as (
        url, launcher
    ):
        sock = connect(url)
        sock.sendall(run_head(len(body)))  # headers now, the body after the drain
        assert requests.get(url + "/healthz", timeout=5).status_code == 200
        os.kill(launcher.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while (health := requests.get(url + "/healthz", timeout=5)).status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert health.status_code == 503 and health.json()["code"] == "Draining"
        assert requests.get(url + "/", headers=DEV_ALICE, timeout=5).status_code == 200
        while True:  # until the drain ends and the port is closed
            try:
                requests.get(url + "/healthz", timeout=5)
            except requests.ConnectionError:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        sock.sendall(body)
        answer = read_all(sock)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 202 "), answer
        assert launcher.wait(timeout=20) == 0
    assert "Traceback" not in output.read_text()


def test_a_second_sigterm_stops_at_once():
    with serve_process(extra_args=("--drain-seconds", "600")) as (url, launcher):
        os.kill(launcher.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while requests.get(url + "/healthz", timeout=5).status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(launcher.pid, signal.SIGTERM)
        assert launcher.wait(timeout=30) == 0  # not 600 s later


def test_no_secret_reaches_a_requests_wsgi_environ():
    """granian copies the environment into every request's WSGI environ; the
    launcher's app loader takes the secret settings out of it first."""
    env = {"FLASK_CLIENT_SECRET": "never-in-an-environ", "FLASK_STORE_URL": "memory://"}
    with serve_process(env, app="tests.proxy_probe:create_app()") as (url, _):
        names = requests.get(url + "/probe/environ", headers=DEV_ALICE, timeout=5).json()
    assert "FLASK_AUTH_MODE" in names  # the environment is there...
    assert "FLASK_CLIENT_SECRET" not in names and "FLASK_STORE_URL" not in names  # ...not these
