"""Who may call and what they may see: tokens (the library's introspection
path, Globus faked over HTTP), the creator, monitor_by, manage_by and group
principals; dev mode (stable dev identities, loopback only, never on by
accident). Globus Auth and Groups failing: test_auth_outages.py."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid

import pytest
import requests

from app import create_app
from app.auth import MissingCredentials, dev_identity
from tests.helpers import DEV_ALICE, RESUME_PATHS, run, start
from tests.server import ROOT, free_port, wait_until_up


# --- tokens ------------------------------------------------------------------------------
def test_introspection_needs_a_token(client):
    response = client.get("/")
    assert response.status_code == 401
    assert response.json["code"] == "UnauthorizedRequest"
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    ["Bearer short", "Basic abcdefghijklmnop", "Bearer token-nobody-knows-about", "Bearer "],
)
def test_bad_tokens_are_401_json(client, header):
    response = client.get("/", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.is_json and set(response.json) == {"code", "description"}
    assert "dev-token" not in response.json["description"]  # no dev-mode hint in production


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR", "Bearer"])
def test_the_bearer_scheme_is_case_insensitive(client, alice, scheme):
    """RFC 9110: the auth scheme is case-insensitive; the library wants "Bearer "."""
    for header in (f"{scheme} {alice.token}", f"  {scheme}   {alice.token}  "):
        assert client.get("/", headers={"Authorization": header}).status_code == 200, header


@pytest.mark.parametrize("header", ["bearer", "bearer short", "bearertoken-nobody-knows"])
def test_a_lowercase_scheme_is_still_checked(client, header):
    response = client.get("/", headers={"Authorization": header})
    assert response.status_code == 401 and response.json["code"] == "UnauthorizedRequest"


def test_token_without_the_provider_scope_is_401(client, globus):
    outsider = globus.user("outsider", scope="urn:globus:auth:scope:transfer.api.globus.org:all")
    response = client.get("/", headers=outsider.headers)
    assert response.status_code == 401
    assert "scope" in response.json["description"]


def test_inactive_token_is_401(client, globus):
    revoked = globus.user("revoked", active=False)
    assert client.get("/", headers=revoked.headers).status_code == 401


def test_new_paths_need_a_token(client, alice):
    action_id = start(client, alice)
    for method, path in [
        ("get", "/actions"),
        ("post", "/actions"),
        ("get", f"/actions/{action_id}"),
        ("post", f"/actions/{action_id}/cancel"),
        ("delete", f"/actions/{action_id}"),
        ("get", f"/actions/{action_id}/log"),
        ("get", f"/{action_id}/log"),
    ]:
        response = getattr(client, method)(path)
        assert response.status_code == 401 and response.is_json, path


@pytest.mark.parametrize("path", RESUME_PATHS)
def test_resuming_needs_a_valid_token(client, alice, globus, path):
    action_id = start(client, alice)
    stale = globus.user("stale", active=False)
    elsewhere = globus.user("elsewhere", scope="urn:globus:auth:scope:transfer.api.globus.org:all")
    for headers in (
        {}, {"Authorization": "Bearer not-a-token-anyone-has"}, stale.headers, elsewhere.headers
    ):
        response = client.post(path.format(action_id), headers=headers)
        assert response.status_code == 401 and response.json["code"] == "UnauthorizedRequest"
        assert response.headers["WWW-Authenticate"] == "Bearer"


# --- authorization -----------------------------------------------------------------------
def test_another_user_gets_404_everywhere(client, alice, bob):
    action_id = run(client, alice).json["action_id"]
    for method, path in [
        ("get", f"/{action_id}/status"),
        ("post", f"/{action_id}/cancel"),
        ("post", f"/{action_id}/release"),
    ]:
        response = getattr(client, method)(path, headers=bob.headers)
        assert response.status_code == 404, path  # seed: 500
        assert response.json["code"] == "ActionNotFound"
    assert client.get(f"/{action_id}/status", headers=alice.headers).json["status"] == "ACTIVE"


def test_another_user_gets_404_on_the_new_paths(client, alice, bob):
    action_id = start(client, alice)
    for method, path in [
        ("get", f"/actions/{action_id}"),
        ("post", f"/actions/{action_id}/cancel"),
        ("delete", f"/actions/{action_id}"),
        ("get", f"/actions/{action_id}/log"),
        ("get", f"/{action_id}/log"),
    ]:
        response = getattr(client, method)(path, headers=bob.headers)
        assert response.status_code == 404 and response.json["code"] == "ActionNotFound", path


def test_monitor_by_may_see_but_not_manage(client, alice, bob):
    action_id = run(client, alice, monitor_by=[bob.urn]).json["action_id"]
    assert client.get(f"/{action_id}/status", headers=bob.headers).status_code == 200
    assert client.post(f"/{action_id}/cancel", headers=bob.headers).status_code == 404


def test_manage_by_may_cancel_and_release(client, alice, bob):
    action_id = run(client, alice, manage_by=[bob.urn]).json["action_id"]
    assert client.post(f"/{action_id}/cancel", headers=bob.headers).status_code == 200
    assert client.post(f"/{action_id}/release", headers=bob.headers).status_code == 200


def test_group_principals_authorize_members(client, globus, alice):
    group = str(uuid.uuid4())
    member = globus.user("member", groups=[group])
    outsider = globus.user("outsider", groups=[str(uuid.uuid4())])
    group_urn = f"urn:globus:groups:id:{group}"
    action_id = run(client, alice, monitor_by=[group_urn], manage_by=[group_urn]).json["action_id"]
    assert client.get(f"/{action_id}/status", headers=member.headers).status_code == 200
    assert client.get(f"/{action_id}/status", headers=outsider.headers).status_code == 404
    assert client.post(f"/{action_id}/cancel", headers=member.headers).status_code == 200
    assert globus.group_lookups >= 2


# --- dev mode ----------------------------------------------------------------------------
@pytest.fixture
def dev_client():
    return create_app({"AUTH_MODE": "dev"}).test_client()


def test_dev_tokens_are_stable_identities(dev_client):
    headers = DEV_ALICE
    body = {"request_id": "r", "body": {"utc_offset": 1}}
    status = dev_client.post("/run", headers=headers, json=body).json
    assert status["creator_id"] == f"urn:globus:auth:identity:{dev_identity('alice')}"
    assert dev_identity("alice") == dev_identity("alice") != dev_identity("bob")


@pytest.mark.parametrize(
    "token", ["dev-token-", "dev-token-a b", "dev-token-" + "x" * 65, "something-else-entirely"]
)
def test_other_tokens_are_refused(dev_client, token):
    assert dev_client.get("/", headers={"Authorization": f"Bearer {token}"}).status_code == 401


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer short"},
                                     {"Authorization": "Bearer token-nobody-knows-about"}])
def test_a_dev_mode_401_names_the_dev_token_form(dev_client, headers):
    response = dev_client.get("/", headers=headers)
    assert response.status_code == 401
    assert "Authorization: Bearer dev-token-<name>" in response.json["description"]


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.1", 200), ("127.8.9.10", 200), ("::1", 200), ("203.0.113.9", 403),
     ("10.0.0.1", 403), ("fe80::1%eth0", 403), ("", 403), ("nonsense", 403)],
)
def test_dev_mode_serves_loopback_only(dev_client, address, expected):
    response = dev_client.get("/", headers=DEV_ALICE, environ_base={"REMOTE_ADDR": address})
    assert response.status_code == expected and response.is_json


def test_dev_mode_refuses_proxied_requests():
    client = create_app({"AUTH_MODE": "dev"}).test_client()
    headers = DEV_ALICE
    assert client.get("/", headers=headers).status_code == 200
    for proxy_header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        response = client.get("/", headers={**headers, proxy_header: "203.0.113.9"})
        assert response.status_code == 403 and response.is_json


def test_dev_mode_says_so_at_startup(caplog):
    caplog.set_level(logging.WARNING)
    create_app({"AUTH_MODE": "dev"})
    assert any("DEV MODE" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_globus_mode_rejects_dev_tokens(globus, make_app):
    client = make_app().test_client()
    assert client.get("/", headers=DEV_ALICE).status_code == 401


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


def test_command_line_server_answers_a_long_url_with_json(tmp_path):
    """``python -m app`` (what scripts/dev runs) passes a 5,000-character URL
    to the app (granian reads up to 64 KiB of request line and headers),
    which answers it in JSON."""
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
            response = requests.get(f"{url}/actions/{'a' * 5000}", headers=DEV_ALICE,
                                    timeout=5)
            assert response.status_code == 404
            assert response.headers["Content-Type"] == "application/json"
            assert set(response.json()) == {"code", "description"}
        finally:
            process.terminate()
            process.wait(timeout=10)
