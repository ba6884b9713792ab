"""nginx with the shipped deploy/nginx.conf (TLS, a certificate made here) in
front of two instances of the service (``python -m app``) on one PostgreSQL
store, as two hosts behind one load balancer: the lifecycle over HTTPS, the
client's address and scheme as the app sees and logs them, /metrics private,
slow and stalled clients kept away from the service and their connections
closed, requests in progress bounded per client address, and one instance
restarted under load without a client seeing an error.

Addresses (tests/nginx.py): the client connects from 127.0.0.2 (a second
client from 127.0.0.4), nginx connects to the instances from 127.0.0.3, which
they trust. The shipped limit of requests in progress per address is
rewritten to CONNECTIONS_PER_ADDRESS here. Globus Auth is
faked over HTTP (a local server answering introspection with app.testing).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import requests
import responses

from app.testing import SCOPE, FakeGlobus
from tests.nginx import (
    CLIENT_ADDRESS,
    CROWD_ADDRESS,
    PROXY_ADDRESS,
    FromAddress,
    shipped_nginx,
)
from tests.postgres import conninfo, with_schema
from tests.server import free_port, serve_process
from tests.store_fixtures import _SESSION

pytestmark = pytest.mark.e2e
SPOOFED = "203.0.113.7"
PROBE_APP = "tests.proxy_probe:create_app()"
# Above what the other tests have in progress from one address at once (16
# stalled bodies, then a request).
CONNECTIONS_PER_ADDRESS = 20


@contextmanager
def fake_globus_auth(globus: FakeGlobus) -> Iterator[str]:
    """Globus Auth's introspection over real HTTP, answered by FakeGlobus."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            if not self.path.endswith("/v2/oauth2/token/introspect"):
                self.send_error(404)
                return
            status, _headers, text = globus._introspect(SimpleNamespace(body=body))
            payload = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class Instance:
    """One ``python -m app`` behind nginx, on a port of its own, which a test
    may stop and start again there. Each start writes its own log file."""

    def __init__(self, env: dict[str, str], folder: Path, name: str) -> None:
        self.env, self.folder, self.name = env, folder, name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.starts = 0
        self.stack = ExitStack()
        self.process: Any = None

    def start(self) -> None:
        self.starts += 1
        _, self.process = self.stack.enter_context(serve_process(
            self.env, workers=None, app=PROBE_APP, port=self.port,
            output_path=self.folder / f"{self.name}-{self.starts}.log",
            extra_args=("--drain-seconds", "1"),
        ))

    def stop(self) -> None:
        self.stack.close()

    @property
    def logs(self) -> list[Path]:
        return sorted(self.folder.glob(f"{self.name}-*.log"))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, postgres_server, shared_rates) -> Iterator[SimpleNamespace]:
    folder = tmp_path_factory.mktemp("proxy")
    schema = f"{_SESSION}_proxy"
    with psycopg.connect(conninfo(postgres_server), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    mock = responses.RequestsMock()  # not started: only its callbacks are used
    globus = FakeGlobus(mock)
    alice = globus.user("alice")
    with ExitStack() as stack:
        auth_url = stack.enter_context(fake_globus_auth(globus))
        env = {
            "FLASK_AUTH_MODE": "globus",
            "FLASK_CLIENT_ID": "00000000-0000-4000-8000-00000000aaaa",
            "FLASK_CLIENT_SECRET": "not-a-real-secret",
            "FLASK_SCOPE": SCOPE,
            "GLOBUS_SDK_SERVICE_URL_AUTH": auth_url,
            "FLASK_STORE_URL": with_schema(postgres_server, schema),
            "FLASK_TRUSTED_PROXIES": PROXY_ADDRESS,
            "FLASK_FAILURE_RATE": "0",
            "FLASK_MIN_DELAY_SECONDS": "2",
            "FLASK_MAX_DELAY_SECONDS": "2",
            **shared_rates,  # two hosts: rates counted in one Redis
            # alice loads it (the restart test): rates far above the defaults
            "FLASK_RUN_RATE_LIMIT": "100000/minute",
            "FLASK_GET_RATE_LIMIT": "100000/minute",
        }
        instances = [Instance(env, folder, f"instance{i}") for i in (1, 2)]
        for instance in instances:
            instance.start()
            stack.callback(instance.stop)
        url, http_url, cert = stack.enter_context(shipped_nginx(
            folder / "nginx", [f"127.0.0.1:{i.port}" for i in instances],
            {"limit_conn": f"whattimeisitrightnow_addr {CONNECTIONS_PER_ADDRESS}"}))
        session = requests.Session()
        session.mount("https://", FromAddress(CLIENT_ADDRESS))
        session.mount("http://", FromAddress(CLIENT_ADDRESS))
        session.trust_env = False  # else REQUESTS_CA_BUNDLE would replace verify
        session.verify = str(cert)
        session.headers.update(alice.headers)
        yield SimpleNamespace(url=url, http_url=http_url, cert=cert, session=session,
                              instances=instances, alice=alice)
    with psycopg.connect(conninfo(postgres_server), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def log_lines(deployment: SimpleNamespace) -> list[dict]:
    return [json.loads(raw) for instance in deployment.instances for log in instance.logs
            for raw in log.read_text().splitlines() if raw.startswith("{")]


def request_lines(log: Path) -> list[dict]:
    return [line for raw in log.read_text().splitlines() if raw.startswith("{")
            for line in [json.loads(raw)] if line.get("logger") == "app.request"]


def assert_no_server_errors(deployment: SimpleNamespace) -> None:
    for instance in deployment.instances:
        for log in instance.logs:
            text = log.read_text()
            assert "Traceback" not in text, text
            assert all(line["status"] < 500 for line in request_lines(log)), text


def test_lifecycle_over_https_across_both_instances(deployment):
    s, url = deployment.session, deployment.url
    assert s.get(url + "/", timeout=10).json()["globus_auth_scope"] == SCOPE
    body = {"request_id": "proxy-1", "body": {"utc_offset": 5.5}}
    started = s.post(url + "/run", json=body, timeout=10)
    assert started.status_code == 202, started.text
    action_id = started.json()["action_id"]
    assert s.post(url + "/run", json=body, timeout=10).status_code == 200  # the retry, anywhere
    statuses = [s.get(f"{url}/{action_id}/status", timeout=10) for _ in range(6)]
    assert [r.status_code for r in statuses] == [200] * 6  # whichever instance answers

    cancelled = s.post(url + "/run", json={"request_id": "proxy-2", "body": {"utc_offset": 0}},
                       timeout=10).json()["action_id"]
    assert s.post(f"{url}/{cancelled}/cancel", timeout=10).json()["details"]["error"] == "CANCELLED"

    deadline = time.monotonic() + 30
    while (status := s.get(f"{url}/{action_id}/status", timeout=10).json())["status"] == "ACTIVE":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert status["status"] == "SUCCEEDED" and "+05:30" in status["details"]["whattimeisit"]
    assert s.post(f"{url}/{action_id}/release", timeout=10).status_code == 200
    assert s.get(f"{url}/{action_id}/status", timeout=10).status_code == 404
    served = [sum(len(request_lines(log)) for log in i.logs) for i in deployment.instances]
    assert all(n > 0 for n in served), served  # both instances took part


def test_the_app_sees_the_forwarded_client_and_https(deployment):
    s, url = deployment.session, deployment.url
    seen = s.get(url + "/probe/request", headers={"X-Forwarded-For": SPOOFED}, timeout=10).json()
    assert seen == {"remote_addr": CLIENT_ADDRESS, "scheme": "https"}  # not the spoofed one
    lines = [line for instance in deployment.instances for log in instance.logs
             for line in request_lines(log) if line.get("path") == "/probe/request"]
    assert lines and {line["remote_addr"] for line in lines} == {CLIENT_ADDRESS}


def test_forwarded_headers_from_others_are_ignored(deployment):
    """Straight to an instance, from an address that is not TRUSTED_PROXIES."""
    direct = requests.Session()
    direct.mount("http://", FromAddress(CLIENT_ADDRESS))
    seen = direct.get(deployment.instances[0].url + "/probe/request", timeout=10,
                      headers={**deployment.alice.headers, "X-Forwarded-For": SPOOFED,
                               "X-Forwarded-Proto": "https"}).json()
    assert seen == {"remote_addr": CLIENT_ADDRESS, "scheme": "http"}


@pytest.mark.parametrize("path", ["/metrics", "//metrics", "/metrics?x=1", "/%6Detrics",
                                  "/metrics/", "/./metrics"])
def test_metrics_are_not_reachable_through_the_proxy(deployment, path):
    answer = deployment.session.get(deployment.url + path, timeout=10)
    assert answer.status_code == 404 and "http_requests_total" not in answer.text


def test_metrics_are_served_on_the_private_bind(deployment):
    answer = requests.get(deployment.instances[0].url + "/metrics", timeout=10)
    assert answer.status_code == 200 and "http_requests_total" in answer.text


def test_plain_http_is_redirected_to_https(deployment):
    answer = deployment.session.get(deployment.http_url + "/healthz", allow_redirects=False,
                                    timeout=10)
    assert answer.status_code == 301
    assert answer.headers["Location"].startswith("https://127.0.0.1")


def tls_connection(deployment: SimpleNamespace, source: str = CLIENT_ADDRESS,
                   other: tuple[str, Path] | None = None) -> ssl.SSLSocket:
    """A TLS connection from ``source`` to the deployment's nginx, or to
    ``other`` (its URL and certificate)."""
    url, cert = other or (deployment.url, deployment.cert)
    context = ssl.create_default_context(cafile=str(cert))
    parts = urlsplit(url)
    raw = socket.create_connection((parts.hostname, parts.port), timeout=10,
                                   source_address=(source, 0))
    return context.wrap_socket(raw, server_hostname="localhost")


def client_session(deployment: SimpleNamespace, source: str) -> requests.Session:
    session = requests.Session()
    session.mount("https://", FromAddress(source))
    session.trust_env, session.verify = False, deployment.session.verify
    session.headers.update(deployment.session.headers)
    return session


def run_head(deployment: SimpleNamespace, length: int) -> bytes:
    return (f"POST /run HTTP/1.1\r\nHost: localhost\r\n"
            f"Authorization: {deployment.alice.headers['Authorization']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


def test_slow_and_stalled_clients_wait_on_nginx_not_on_the_service(deployment):
    """16 connections trickling their headers a byte every 2 s and 16 sending
    10 bytes of a 100-byte body, then nothing: every other request is answered
    meanwhile (nginx reads headers and whole bodies before it passes a request
    on). Bodies cut short by a client that leaves never reach the service."""
    s, url = deployment.session, deployment.url
    slow = [tls_connection(deployment) for _ in range(16)]
    stalled = [tls_connection(deployment) for _ in range(16)]
    try:
        for sock in slow:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        for sock in stalled:
            sock.sendall(run_head(deployment, 100) + b'{"request_')
        answered = []
        for round_ in range(3):
            for sock in slow:
                sock.sendall(b"X")
            answered += [s.get(url + "/", timeout=10).status_code for _ in range(4)]
            request = {"request_id": f"busy-{uuid.uuid4()}", "body": {"utc_offset": round_}}
            answered.append(s.post(url + "/run", json=request, timeout=10).status_code)
            time.sleep(2)
        assert answered == [200, 200, 200, 200, 202] * 3
    finally:
        for sock in slow + stalled:
            sock.close()
    for _ in range(4):  # half a body, then the client leaves
        with tls_connection(deployment) as sock:
            sock.sendall(run_head(deployment, 100) + b'{"request_id": "gone"')
    time.sleep(0.5)
    assert s.get(url + "/", timeout=10).status_code == 200
    assert not [line for line in log_lines(deployment) if line.get("path") == "/run"
                and line.get("status") == 400]  # nothing cut short reached the service
    assert_no_server_errors(deployment)


def until(answer: Any, condition: Any) -> Any:
    """Ask ``answer()`` until ``condition`` holds of what it returns (nginx
    counts a request once it has read its headers, a moment after they are
    sent); at most 5 s."""
    deadline = time.monotonic() + 5
    while not condition(got := answer()):
        assert time.monotonic() < deadline, got
        time.sleep(0.05)
    return got


def test_requests_in_progress_are_bounded_per_address(deployment):
    """CONNECTIONS_PER_ADDRESS runs from one address hold their bodies back:
    one request more from there is answered 503 by nginx (JSON, Retry-After)
    and never reaches the service, while another address is served; once one
    of them leaves, the address is served again. No per-address rate: the
    same address is served any number of times in a row."""
    s, url = deployment.session, deployment.url
    crowd = client_session(deployment, CROWD_ADDRESS)
    assert [crowd.get(url + "/", timeout=10).status_code for _ in range(30)] == [200] * 30
    held = [tls_connection(deployment, CROWD_ADDRESS) for _ in range(CONNECTIONS_PER_ADDRESS)]
    try:
        for sock in held:
            sock.sendall(run_head(deployment, 100) + b'{"request_')
        refused = until(lambda: crowd.get(url + "/", timeout=10), lambda r: r.status_code != 200)
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert refused.headers["Content-Type"] == "application/json"
        assert refused.json() == {
            "code": "TooManyConnections",
            "description": "Too many requests in progress from your address; try again shortly.",
        }
        assert crowd.post(url + "/run", json={"request_id": "crowd", "body": {"utc_offset": 1}},
                          timeout=10).status_code == 503
        assert s.get(url + "/", timeout=10).status_code == 200  # another address
        run = {"request_id": f"other-{uuid.uuid4()}", "body": {"utc_offset": 1}}
        assert s.post(url + "/run", json=run, timeout=10).status_code == 202
        held.pop().close()  # one leaves: limit - 1 held, so one more may come in
        until(lambda: crowd.get(url + "/", timeout=10), lambda r: r.status_code == 200)
    finally:
        for sock in held:
            sock.close()
    until(lambda: crowd.get(url + "/", timeout=10), lambda r: r.status_code == 200)
    crowd_lines = [line for line in log_lines(deployment)
                   if line.get("logger") == "app.request" and line["remote_addr"] == CROWD_ADDRESS]
    assert crowd_lines and {line["status"] for line in crowd_lines} == {200}
    assert_no_server_errors(deployment)


def closed_by_peer(sock: socket.socket) -> bool:
    """Does the other end close the connection (within the socket's timeout)?"""
    try:
        return sock.recv(1024) == b""
    except (ConnectionResetError, ssl.SSLError):
        return True  # reset_timedout_connection: a reset, not a FIN


def test_idle_and_stalled_connections_are_closed(deployment, tmp_path):
    """The shipped file's timeouts, at 1 s: a kept-alive connection left idle,
    headers left half-sent and a body left half-sent are closed by nginx;
    the half-sent run never reaches the service."""
    timeouts = {"keepalive_timeout": "1s", "client_header_timeout": "1s",
                "client_body_timeout": "1s"}
    upstreams = [f"127.0.0.1:{i.port}" for i in deployment.instances]
    with shipped_nginx(tmp_path / "nginx", upstreams, timeouts) as (url, _, cert):
        idle = tls_connection(deployment, other=(url, cert))
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            answer += idle.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")
        header = tls_connection(deployment, other=(url, cert))
        header.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        body = tls_connection(deployment, other=(url, cert))
        body.sendall(run_head(deployment, 100) + b'{"request_id": "stalled-body"')
        assert [closed_by_peer(sock) for sock in (idle, header, body)] == [True] * 3
        for sock in (idle, header, body):
            sock.close()
    assert not [line for line in log_lines(deployment) if line.get("path") == "/run"
                and line.get("status") == 400]


def test_an_instance_restarted_under_load_costs_clients_nothing(deployment):
    """Clients run and poll actions through nginx while one instance gets
    SIGTERM and starts again: every answer is a 200 or 202 (no 5xx, no
    502), and every action acknowledged before, during or after still answers."""
    s, url = deployment.session, deployment.url
    acknowledged: list[str] = []
    answers: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        session = requests.Session()
        session.mount("https://", FromAddress(CLIENT_ADDRESS))
        session.trust_env, session.verify = False, s.verify
        session.headers.update(s.headers)
        while not stop.is_set():
            request = {"request_id": f"load-{uuid.uuid4()}", "body": {"utc_offset": 1}}
            started = session.post(url + "/run", json=request, timeout=30)
            codes = [started.status_code]
            if started.status_code in (200, 202):
                action_id = started.json()["action_id"]
                with lock:
                    acknowledged.append(action_id)
                codes.append(session.get(f"{url}/{action_id}/status", timeout=30).status_code)
            with lock:
                answers.extend(codes)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        restarted = deployment.instances[0]
        os.kill(restarted.process.pid, signal.SIGTERM)  # the launcher only: it drains
        assert restarted.process.wait(timeout=30) == 0
        restarted.stop()
        restarted.start()
        deadline = time.monotonic() + 30  # nginx tries it again 10 s (fail_timeout) on
        while not [line for line in request_lines(restarted.logs[-1]) if line["route"] == "/run"]:
            assert time.monotonic() < deadline, "the restarted instance served no run"
            time.sleep(0.5)
        time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert answers and set(answers) <= {200, 202}, sorted(set(answers))
    lost = [a for a in acknowledged if s.get(f"{url}/{a}/status", timeout=10).status_code != 200]
    assert lost == [] and len(acknowledged) > 20
    assert_no_server_errors(deployment)
