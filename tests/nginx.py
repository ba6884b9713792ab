"""nginx with the shipped deploy/nginx.conf in front of instances of the
service, for e2e tests: a certificate made here, the shipped file with the
test's ports, and nginx in its own folder.

Addresses: a test's client connects from CLIENT_ADDRESS (or CROWD_ADDRESS, a
second client), nginx connects to the instances from PROXY_ADDRESS
(proxy_bind, the one line the tests add), which the instances trust
(FLASK_TRUSTED_PROXIES).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from requests.adapters import HTTPAdapter

from tests.server import ROOT, free_port

SHIPPED = ROOT / "deploy" / "nginx.conf"
CLIENT_ADDRESS, PROXY_ADDRESS, CROWD_ADDRESS = "127.0.0.2", "127.0.0.3", "127.0.0.4"


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


def nginx_site(upstreams: list[str], http_port: int, https_port: int,
               cert: Path, key: Path, directives: dict[str, str] | None = None) -> str:
    """The shipped file with this test's ports, certificate and proxy_bind;
    each replaced line must be there (the test follows the shipped file).
    ``directives`` sets values in the HTTPS server ({"send_timeout": "1s"}),
    each replacing its one line there."""
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
    head, listen, server = text.partition(f"    listen 127.0.0.1:{https_port} ssl;\n")
    for name, value in (directives or {}).items():
        server, count = re.subn(rf"(?m)^    {re.escape(name)} [^;\n]*;$",
                                f"    {name} {value};", server)
        assert count == 1, f"deploy/nginx.conf's HTTPS server has no one {name!r} line"
    return head + listen + server


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
events {{ worker_connections 512; }}
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


@contextmanager
def shipped_nginx(
    folder: Path, upstreams: list[str], directives: dict[str, str] | None = None
) -> Iterator[tuple[str, str, Path]]:
    """The shipped file in front of ``upstreams`` (host:port), with
    ``directives`` (nginx_site); yields the HTTPS and HTTP base URLs and the
    certificate to trust."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = self_signed(folder)
    http_port, https_port = free_port(), free_port()
    site = nginx_site(upstreams, http_port, https_port, cert, key, directives)
    with nginx(folder / "nginx", site, https_port):
        yield f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{http_port}", cert
