"""Stock gunicorn stays possible: the documented line, a stock worker class
(gthread), two workers on a shared store (SQLite), behind nginx with the
shipped deploy/nginx.conf, in Globus Auth mode (a loopback Auth stand-in).
The memory store on several gunicorn workers is refused: test_startup.py."""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from tests.loopback_auth import loopback_auth, production_auth_env
from tests.nginx import CLIENT_ADDRESS, PROXY_ADDRESS, FromAddress, shipped_nginx
from tests.server import gunicorn_process

pytestmark = pytest.mark.e2e
# What the docs give; --keep-alive above nginx's upstream keepalive_timeout (5 s).
LINE = ("-k", "gthread", "--threads", "4", "-w", "2", "--keep-alive", "10")


def test_stock_gunicorn_behind_nginx_serves_the_lifecycle(tmp_path, sqlite_url, shared_rates):
    with loopback_auth() as (auth_url, _counters):
        env = {**production_auth_env(auth_url), "FLASK_STORE_URL": sqlite_url,
               "FLASK_TRUSTED_PROXIES": PROXY_ADDRESS, "FLASK_MIN_DELAY_SECONDS": "600",
               "FLASK_MAX_DELAY_SECONDS": "600", **shared_rates}
        output = tmp_path / "gunicorn.log"
        with (
            gunicorn_process(env, LINE, output_path=output) as (upstream, _),
            shipped_nginx(tmp_path / "nginx", [upstream.removeprefix("http://")]) as (
                url, _http_url, cert),
        ):
            session = requests.Session()
            session.mount("https://", FromAddress(CLIENT_ADDRESS))
            session.trust_env, session.verify = False, str(cert)
            session.headers["Authorization"] = f"Bearer token-{uuid.uuid4().hex}"
            started = session.post(url + "/run", timeout=10, json={
                "request_id": "gunicorn-1", "body": {"utc_offset": 1}})
            assert started.status_code == 202, started.text
            action_id = started.json()["action_id"]
            statuses = [session.get(f"{url}/{action_id}/status", timeout=10) for _ in range(6)]
            assert [s.status_code for s in statuses] == [200] * 6  # on either worker
            assert session.post(f"{url}/{action_id}/cancel", timeout=10).status_code == 200
            missing = session.get(url + "/no/such/path", timeout=10)
            assert missing.status_code == 404 and set(missing.json()) == {"code", "description"}
            assert all(len(r.headers["X-Request-ID"]) == 32 for r in [started, *statuses])
    lines = [json.loads(x) for x in output.read_text().splitlines() if x.startswith("{")]
    runs = [x for x in lines if x.get("logger") == "app.request" and x["route"] == "/run"]
    assert runs and runs[0]["remote_addr"] == CLIENT_ADDRESS  # the forwarded client
    assert "Traceback" not in output.read_text()
