"""The real globus-automate client (CLI and Python ActionClient) against the
real server in dev mode. The client lives in a venv of its own, made once."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from app.auth import DEV_SCOPE
from tests.server import ROOT, serve

pytestmark = pytest.mark.e2e
REQUIREMENTS = Path(__file__).parent / "automate-client-requirements.txt"
VENV = ROOT / ".venv-automate"


@pytest.fixture(scope="module")
def automate_venv() -> Path:
    stamp = VENV / ".installed"
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run(
            [str(VENV / "bin/pip"), "install", "--quiet", "--disable-pip-version-check",
             "-r", str(REQUIREMENTS)],
            check=True,
        )
        stamp.write_text(digest)
    return VENV


@pytest.fixture(scope="module")
def url():
    env = {"FLASK_MIN_DELAY_SECONDS": "1", "FLASK_MAX_DELAY_SECONDS": "1",
           "FLASK_FAILURE_RATE": "0"}
    with serve(env) as base:
        yield base + "/"


@pytest.fixture(scope="module")
def slow_url():
    """Actions that stay ACTIVE for the length of a test."""
    with serve({"FLASK_MIN_DELAY_SECONDS": "600"}) as base:
        yield base + "/"


@pytest.fixture
def cli(automate_venv, tmp_path):
    """Run `globus-automate` with a dev token in its token cache."""
    tokens = {DEV_SCOPE: {"access_token": "dev-token-alice", "refresh_token": None,
                          "expiration_time": 4102444800, "dependent_scopes": []}}
    (tmp_path / ".globus_automate_tokens.json").write_text(json.dumps(tokens))

    def run(*args: str) -> dict:
        result = subprocess.run(
            [str(automate_venv / "bin/globus-automate"), "action", *args],
            env={**os.environ, "HOME": str(tmp_path)}, capture_output=True, text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    return run


def test_automate_cli_lifecycle(cli, slow_url):
    common = ["--action-url", slow_url, "--action-scope", DEV_SCOPE]
    assert cli("introspect", *common)["title"] == "What Time Is It Right Now?"
    request_id = str(uuid.uuid4())
    started = cli("run", *common, "--body", '{"utc_offset": 1}', "--request-id", request_id,
                  "--label", "from the cli")
    assert started["status"] == "ACTIVE" and started["label"] == "from the cli"
    action_id = started["action_id"]
    # The CLI always sends monitor_by: [] and manage_by: []; a retry is the same action.
    again = cli("run", *common, "--body", '{"utc_offset": 1}', "--request-id", request_id,
                "--label", "from the cli")
    assert again["action_id"] == action_id
    watched = cli("status", *common, action_id)
    assert watched["action_id"] == action_id
    refused = cli("release", *common, action_id)  # still running: the 409 body is printed
    assert refused["code"] == "ActionConflict"
    cancelled = cli("cancel", *common, action_id)
    assert cancelled["details"]["error"] == "CANCELLED"
    released = cli("release", *common, action_id)
    assert released["status"] == "FAILED"
    assert cli("status", *common, action_id)["code"] == "ActionNotFound"


def test_automate_python_action_client(automate_venv, url):
    script = textwrap.dedent(f"""
        import json, time
        from globus_sdk import AccessTokenAuthorizer
        from globus_automate_client import ActionClient

        alice = ActionClient.new_client({url!r}, AccessTokenAuthorizer("dev-token-alice"))
        bob = ActionClient.new_client({url!r}, AccessTokenAuthorizer("dev-token-bob"))
        out = {{}}
        started = alice.run({{"utc_offset": "+05:30"}}, label="python", tags=["t"])
        out["run"] = started.http_status
        action_id = started["action_id"]
        try:
            bob.status(action_id)
        except Exception as error:
            out["bob"] = error.http_status
        deadline = time.monotonic() + 15
        while (final := alice.status(action_id)).data["status"] == "ACTIVE":
            assert time.monotonic() < deadline, "still ACTIVE"
            time.sleep(0.05)
        out["final"] = final.data
        out["log"] = [entry["code"] for entry in alice.log(action_id)["entries"]]
        out["release"] = alice.release(action_id).http_status
        print(json.dumps(out))
    """)
    result = subprocess.run([str(automate_venv / "bin/python"), "-c", script],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["run"] == 202 and out["bob"] == 404 and out["release"] == 200
    assert out["final"]["status"] == "SUCCEEDED"
    assert out["final"]["details"]["whattimeisit"].endswith("+05:30")
    assert out["log"] == ["STARTED", "SUCCEEDED"]
