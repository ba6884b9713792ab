"""nginx with the shipped deploy/nginx.conf (TLS, a certificate made here) in
front of two gunicorn instances on one PostgreSQL store, as two hosts behind
one load balancer: the lifecycle over HTTPS, the client's address and scheme
as the app sees and logs them, /metrics private.

Addresses: the client connects from 127.0.0.2, nginx connects to the
instances from 127.0.0.3 (proxy_bind, the test's one addition), and the
instances trust 127.0.0.3 only (FLASK_TRUSTED_PROXIES). Globus Auth is faked
over HTTP (a local server answering introspection with app.testing).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
import requests
import responses
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from requests.adapters import HTTPAdapter

from app.testing import SCOPE, FakeGlobus
from tests.postgres import conninfo, with_schema
from tests.server import ROOT, free_port, gunicorn_process
from tests.store_fixtures import _SESSION

pytestmark = pytest.mark.e2e
SHIPPED = ROOT / "deploy" / "nginx.conf"
CLIENT_ADDRESS, PROXY_ADDRESS = "127.0.0.2", "127.0.0.3"
SPOOFED = "203.0.113.7"


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        pytest.fail("nginx is not installed (scripts/test installs Debian's nginx or says how)")
    return found


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        ), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert, key_file = folder / "cert.pem", folder / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    return cert, key_file


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
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def nginx_site(upstreams: list[str], http_port: int, https_port: int,
               cert: Path, key: Path) -> str:
    """The shipped file with this test's ports, certificate and proxy_bind;
    each replaced line must be there (the test follows the shipped file)."""
    text = SHIPPED.read_text()
    replacements = {
        "    server 127.0.0.1:8000;\n": "".join(f"    server {u};\n" for u in upstreams),
        "    listen 80;\n": f"    listen 127.0.0.1:{http_port};\n",
        "    listen [::]:80;\n": "",
        "    listen 443 ssl;\n": f"    listen 127.0.0.1:{https_port} ssl;\n",
        "    listen [::]:443 ssl;\n": "",
        "/etc/letsencrypt/live/provider.example.org/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/provider.example.org/privkey.pem": str(key),
        "        proxy_pass http://whattimeisitrightnow;\n":
            f"        proxy_pass http://whattimeisitrightnow;\n"
            f"        proxy_bind {PROXY_ADDRESS};\n",
    }
    for old, new in replacements.items():
        assert old in text, f"deploy/nginx.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text


@contextmanager
def nginx(folder: Path, site: str, https_port: int) -> Iterator[None]:
    for sub in ("logs", "temp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "site.conf").write_text(site)
    temp = folder / "temp"
    (folder / "nginx.conf").write_text(f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/logs/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {folder}/logs/access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {folder}/site.conf;
}}
""")
    binary = nginx_binary()
    command = [binary, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-g", "daemon off;"]
    check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
            try:
                socket.create_connection(("127.0.0.1", https_port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
        yield
    finally:
        os.killpg(process.pid, signal.SIGQUIT)  # graceful stop of master and worker
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class FromAddress(HTTPAdapter):
    """requests, connecting from a chosen local address."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs["source_address"] = (self.address, 0)
        return super().init_poolmanager(*args, **kwargs)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, postgres_server) -> Iterator[SimpleNamespace]:
    folder = tmp_path_factory.mktemp("proxy")
    schema = f"{_SESSION}_proxy"
    with psycopg.connect(conninfo(postgres_server), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    mock = responses.RequestsMock()  # not started: only its callbacks are used
    globus = FakeGlobus(mock)
    alice = globus.user("alice")
    cert, key = self_signed(folder)
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
        }
        instances = [
            stack.enter_context(gunicorn_process(
                env, app="tests.proxy_probe:create_app()", output_path=folder / f"instance{i}.log"
            ))[0]
            for i in (1, 2)
        ]
        http_port, https_port = free_port(), free_port()
        site = nginx_site([u.removeprefix("http://") for u in instances], http_port, https_port,
                          cert, key)
        stack.enter_context(nginx(folder / "nginx", site, https_port))
        session = requests.Session()
        session.mount("https://", FromAddress(CLIENT_ADDRESS))
        session.mount("http://", FromAddress(CLIENT_ADDRESS))
        session.trust_env = False  # else REQUESTS_CA_BUNDLE would replace verify
        session.verify = str(cert)
        session.headers.update(alice.headers)
        yield SimpleNamespace(
            url=f"https://127.0.0.1:{https_port}", http_url=f"http://127.0.0.1:{http_port}",
            session=session, instances=instances, alice=alice,
            logs=[folder / f"instance{i}.log" for i in (1, 2)],
        )
    with psycopg.connect(conninfo(postgres_server), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def request_lines(log: Path) -> list[dict]:
    lines = []
    for raw in log.read_text().splitlines():
        if raw.startswith("{"):
            line = json.loads(raw)
            if line.get("logger") == "app.request":
                lines.append(line)
    return lines


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
    served = [len(request_lines(log)) for log in deployment.logs]
    assert all(n > 0 for n in served), served  # both instances took part


def test_the_app_sees_the_forwarded_client_and_https(deployment):
    s, url = deployment.session, deployment.url
    seen = s.get(url + "/probe/request", headers={"X-Forwarded-For": SPOOFED}, timeout=10).json()
    assert seen == {"remote_addr": CLIENT_ADDRESS, "scheme": "https"}  # not the spoofed one
    lines = [line for log in deployment.logs for line in request_lines(log)
             if line.get("path") == "/probe/request"]
    assert lines and {line["remote_addr"] for line in lines} == {CLIENT_ADDRESS}


def test_forwarded_headers_from_others_are_ignored(deployment):
    """Straight to an instance, from an address that is not TRUSTED_PROXIES."""
    direct = requests.Session()
    direct.mount("http://", FromAddress(CLIENT_ADDRESS))
    seen = direct.get(deployment.instances[0] + "/probe/request", timeout=10,
                      headers={**deployment.alice.headers, "X-Forwarded-For": SPOOFED,
                               "X-Forwarded-Proto": "https"}).json()
    assert seen == {"remote_addr": CLIENT_ADDRESS, "scheme": "http"}


@pytest.mark.parametrize("path", ["/metrics", "//metrics", "/metrics?x=1", "/%6Detrics",
                                  "/metrics/", "/./metrics"])
def test_metrics_are_not_reachable_through_the_proxy(deployment, path):
    answer = deployment.session.get(deployment.url + path, timeout=10)
    assert answer.status_code == 404 and "http_requests_total" not in answer.text


def test_metrics_are_served_on_the_private_bind(deployment):
    answer = requests.get(deployment.instances[0] + "/metrics", timeout=10)
    assert answer.status_code == 200 and "http_requests_total" in answer.text


def test_plain_http_is_redirected_to_https(deployment):
    answer = deployment.session.get(deployment.http_url + "/healthz", allow_redirects=False,
                                    timeout=10)
    assert answer.status_code == 301
    assert answer.headers["Location"].startswith("https://127.0.0.1")
