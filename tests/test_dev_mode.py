"""Dev mode: stable dev identities, loopback only, never on by accident."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests

from app import create_app
from app.auth import MissingCredentials, dev_identity
from tests.server import ROOT, free_port, wait_until_up


@pytest.fixture
def dev_client():
    return create_app({"AUTH_MODE": "dev"}).test_client()


def test_dev_tokens_are_stable_identities(dev_client):
    headers = {"Authorization": "Bearer dev-token-alice"}
    body = {"request_id": "r", "body": {"utc_offset": 1}}
    status = dev_client.post("/run", headers=headers, json=body).json
    assert status["creator_id"] == f"urn:globus:auth:identity:{dev_identity('alice')}"
    assert dev_identity("alice") == dev_identity("alice") != dev_identity("bob")


@pytest.mark.parametrize(
    "token", ["dev-token-", "dev-token-a b", "dev-token-" + "x" * 65, "something-else-entirely"]
)
def test_other_tokens_are_refused(dev_client, token):
    assert dev_client.get("/", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_dev_mode_serves_loopback_only(dev_client):
    headers = {"Authorization": "Bearer dev-token-alice"}
    far = dev_client.get("/", headers=headers, environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert far.status_code == 403 and far.is_json
    near = dev_client.get("/", headers=headers, environ_base={"REMOTE_ADDR": "::1"})
    assert near.status_code == 200


def test_globus_mode_rejects_dev_tokens(globus, make_app):
    client = make_app().test_client()
    assert client.get("/", headers={"Authorization": "Bearer dev-token-alice"}).status_code == 401


def test_no_credentials_and_no_dev_refuses_to_start(monkeypatch):
    for key in ("FLASK_CLIENT_ID", "FLASK_CLIENT_SECRET", "FLASK_SCOPE", "FLASK_AUTH_MODE"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(MissingCredentials, match="FLASK_CLIENT_ID"):
        create_app()


def test_command_line_without_credentials_says_what_to_set():
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    result = subprocess.run(
        [sys.executable, "-m", "app", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "FLASK_CLIENT_ID" in lines[0] and "--dev" in lines[0]


def test_command_line_dev_refuses_a_public_bind():
    result = subprocess.run(
        [sys.executable, "-m", "app", "--dev", "--host", "0.0.0.0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "loopback" in result.stderr


def test_command_line_server_refuses_a_long_url_with_json(tmp_path):
    """``python -m app`` (what scripts/dev runs) answers gunicorn's own 414 in JSON too."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    with open(tmp_path / "out", "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "--dev", "--port", str(port)],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_up(url, process)
            response = requests.get(f"{url}/actions/{'a' * 5000}", timeout=5)
            assert response.status_code == 414
            assert response.headers["Content-Type"] == "application/json"
            assert set(response.json()) == {"code", "description"}
        finally:
            process.terminate()
            process.wait(timeout=10)
