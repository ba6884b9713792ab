"""ap-client against the real service (python -m app, dev mode): in-process and as a command."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ap_client.cli import EXIT_FAILED, EXIT_HTTP, EXIT_INTERRUPTED, EXIT_UNREACHABLE, cli
from tests.server import closed_port, serve

pytestmark = pytest.mark.e2e
AP_CLIENT = Path(sys.executable).parent / "ap-client"
SHORT = {"FLASK_MIN_DELAY_SECONDS": "1", "FLASK_MAX_DELAY_SECONDS": "1.5"}


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch, tmp_path):
    """Nothing from the developer's shell or ~/.config may leak into a test."""
    for name in ("ACTION_PROVIDER_URL", "ACTION_PROVIDER_TOKEN", "ACTION_PROVIDER_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ACTION_PROVIDER_TOKEN_FILE", str(tmp_path / "tokens.json"))


@pytest.fixture(scope="module")
def url():
    with serve({**SHORT, "FLASK_FAILURE_RATE": "0"}) as base:
        yield base


@pytest.fixture(scope="module")
def failing_url():
    with serve({**SHORT, "FLASK_FAILURE_RATE": "1"}) as base:
        yield base


def ap(url: str, *args: str, token: str | None = "dev-token-alice", input: str | None = None):
    options = ["--url", url] + (["--token", token] if token else [])
    return CliRunner().invoke(cli, [*options, *args], input=input, catch_exceptions=False)


def as_json(url: str, *args: str, token: str = "dev-token-alice") -> dict:
    result = ap(url, "--json", *args, token=token)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) >= 1
    return lines[-1]


def test_lifecycle(url):
    introspection = ap(url, "introspect")
    assert introspection.exit_code == 0
    assert "What Time Is It Right Now?" in introspection.stdout
    assert as_json(url, "introspect")["globus_auth_scope"].startswith("https://")

    request_id = f"cli-{uuid.uuid4()}"
    run_args = ("run", "--utc-offset", "+05:30", "--label", "demo", "--request-id", request_id)
    started = ap(url, *run_args)
    assert started.exit_code == 0, started.stderr
    assert f"request_id: {request_id}" in started.stderr
    fields = dict(line.split(None, 1) for line in started.stdout.splitlines() if "  " in line)
    assert fields["status"] == "ACTIVE" and fields["label"] == "demo"
    action_id = fields["action_id"]

    again = as_json(url, *run_args)
    assert again["action_id"] == action_id  # a retry, not a second action

    assert as_json(url, "status", action_id)["status"] == "ACTIVE"
    waited = ap(url, "status", "--wait", action_id)
    assert waited.exit_code == 0, waited.stderr
    assert "status           SUCCEEDED" in waited.stdout
    assert "whattimeisit" in waited.stdout and "+05:30" in waited.stdout
    assert f"{action_id}: ACTIVE" in waited.stderr  # progress goes to stderr

    released = as_json(url, "release", action_id)
    assert released["status"] == "SUCCEEDED"
    gone = ap(url, "status", action_id)
    assert gone.exit_code == EXIT_HTTP
    assert error_line(gone) == f"Error: 404 ActionNotFound: No action with id {action_id}"


def test_run_wait_json_succeeds_with_clean_stdout(url):
    result = ap(url, "--json", "run", "--utc-offset", "-3", "--wait")
    assert result.exit_code == 0, result.stderr
    final = json.loads(result.stdout)  # stdout is the document alone
    assert final["status"] == "SUCCEEDED"
    assert final["details"]["whattimeisit"].endswith("-03:00")
    assert "request_id: " in result.stderr


def test_run_wait_exits_non_zero_when_the_action_fails(failing_url):
    result = ap(failing_url, "--json", "run", "--body", '{"utc_offset": 1}', "--wait")
    assert result.exit_code == EXIT_FAILED
    assert json.loads(result.stdout)["details"]["error"] == "WATCHLESS"


def test_body_file_from_stdin(url):
    result = ap(url, "--json", "run", "--body-file", "-", input='{"utc_offset": 5.5}')
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "ACTIVE"


def test_cancel_then_conflicts(url):
    action_id = as_json(url, "run", "--utc-offset", "1")["action_id"]
    early = ap(url, "release", action_id)
    assert early.exit_code == EXIT_HTTP
    assert error_line(early).startswith("Error: 409 ActionConflict: ")
    cancelled = as_json(url, "cancel", action_id)
    assert cancelled["details"]["error"] == "CANCELLED"
    twice = ap(url, "cancel", action_id)
    assert twice.exit_code == EXIT_HTTP
    assert error_line(twice) == (
        f"Error: 409 ActionConflict: Action {action_id} has already completed"
    )


def test_error_lines(url):
    action_id = as_json(url, "run", "--utc-offset", "1")["action_id"]

    not_bobs = ap(url, "status", action_id, token="dev-token-bob")
    assert (not_bobs.exit_code, error_line(not_bobs)) == (
        EXIT_HTTP, f"Error: 404 ActionNotFound: No action with id {action_id}"
    )

    request_id = str(uuid.uuid4())
    assert ap(url, "run", "--utc-offset", "1", "--request-id", request_id).exit_code == 0
    reused = ap(url, "run", "--utc-offset", "2", "--request-id", request_id)
    assert reused.exit_code == EXIT_HTTP
    assert error_line(reused).startswith("Error: 409 ActionConflict: ")

    bad_body = ap(url, "run", "--utc-offset", "99")
    assert bad_body.exit_code == EXIT_HTTP
    assert error_line(bad_body).startswith("Error: 400 BadActionRequest: ")
    assert "utc_offset" in error_line(bad_body)

    bad_token = ap(url, "status", action_id, token="not-a-dev-token")
    assert bad_token.exit_code == EXIT_HTTP
    assert error_line(bad_token).startswith("Error: 401 UnauthorizedRequest: ")
    assert "ap-client login" in error_line(bad_token)

    no_token = ap(url, "introspect", token=None)
    assert no_token.exit_code == EXIT_HTTP
    assert error_line(no_token).startswith("Error: 401 ")


def test_connection_refused_is_one_line():
    with closed_port() as port:
        closed = f"http://127.0.0.1:{port}"
        result = ap(closed, "status", "x")
    assert result.exit_code == EXIT_UNREACHABLE
    assert result.stderr.strip() == f"Error: could not reach {closed}: connection refused"


def test_usage_errors_exit_2(url):
    assert ap(url, "run").exit_code == 2
    assert ap(url, "run", "--utc-offset", "1", "--body", "{}").exit_code == 2
    not_json = ap(url, "run", "--body", "{utc")
    assert not_json.exit_code == 2 and "--body is not valid JSON" in not_json.stderr


def test_list_where_a_provider_has_no_enumeration(url):
    # Below a path prefix no provider route answers: what a provider without /actions does.
    result = ap(url + "/elsewhere", "list")
    assert result.exit_code == EXIT_HTTP
    assert error_line(result) == (
        f"Error: {url}/elsewhere does not list actions (GET /actions answered 404)"
    )


def test_list_shows_my_actions_or_says_it_cannot(url):
    action_id = as_json(url, "run", "--utc-offset", "1", "--label", "listed")["action_id"]
    result = ap(url, "list", "--status", "active")
    if result.exit_code == 0:  # the provider enumerates
        assert any(line.startswith(action_id) for line in result.stdout.splitlines())
    else:
        assert error_line(result) == (
            f"Error: {url} does not list actions (GET /actions answered 404)"
        )


def test_log_follows_the_providers_log_supported(url):
    action_id = as_json(url, "run", "--utc-offset", "1")["action_id"]
    supported = as_json(url, "introspect").get("log_supported") is True
    result = ap(url, "log", action_id)
    if supported:
        assert result.exit_code == 0, result.stderr
        assert result.stdout.splitlines()[0].split() == ["TIME", "CODE", "DESCRIPTION"]
    else:
        assert result.exit_code == EXIT_HTTP
        assert error_line(result).startswith(f"Error: {url} does not provide action logs")


def test_503_is_one_line_with_retry_after():
    # A real provider whose Globus Auth is unreachable answers 503 + Retry-After.
    with closed_port() as auth_port:
        env = {
            "FLASK_AUTH_MODE": "globus",
            "FLASK_CLIENT_ID": "00000000-0000-4000-8000-00000000aaaa",
            "FLASK_CLIENT_SECRET": "not-a-secret",
            "FLASK_SCOPE": "https://auth.globus.org/scopes/x/action_all",
            "GLOBUS_SDK_SERVICE_URL_AUTH": f"http://127.0.0.1:{auth_port}/",
        }
        with serve(env) as base:
            result = ap(base, "status", "x", token="some-globus-token")
    assert result.exit_code == EXIT_HTTP
    assert error_line(result) == (
        "Error: 503 AuthUnavailable: Globus Auth is unavailable; try again shortly. "
        "(retry after 5 s)"
    )


# --- the installed console command, as a real process --------------------------------


def run_command(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "ACTION_PROVIDER_TOKEN": "dev-token-alice"}
    return subprocess.run(
        [str(AP_CLIENT), *args], env=env, capture_output=True, text=True, timeout=60, **kwargs
    )


def test_console_command_and_module_are_installed(url):
    assert AP_CLIENT.exists(), "the project is not installed (scripts/_venv.sh installs it)"
    result = run_command("--url", url, "--json", "run", "--utc-offset", "2", "--wait")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "SUCCEEDED"
    module = subprocess.run(
        [sys.executable, "-m", "ap_client", "--help"], capture_output=True, text=True, timeout=60
    )
    assert module.returncode == 0 and "introspect" in module.stdout


def test_ctrl_c_stops_waiting_without_cancelling():
    with serve({"FLASK_MIN_DELAY_SECONDS": "300", "FLASK_MAX_DELAY_SECONDS": "300"}) as base:
        process = subprocess.Popen(
            [str(AP_CLIENT), "--url", base, "run", "--utc-offset", "1", "--wait"],
            env={**os.environ, "ACTION_PROVIDER_TOKEN": "dev-token-alice"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            # Ctrl-C as a terminal sends it: a suite started in the background
            # (`scripts/test &`) ignores SIGINT, and its children would inherit that.
            preexec_fn=_default_sigint,
        )
        try:
            waiting = read_until(process, ": ACTIVE", seconds=30)
            action_id = waiting.rsplit(": ACTIVE", 1)[0].split()[-1]
            process.send_signal(signal.SIGINT)
            _, rest = process.communicate(timeout=30)
            rest = rest.decode()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == EXIT_INTERRUPTED
        assert f"Resume with: ap-client --url {base} status --wait {action_id}" in rest
        still = as_json(base, "status", action_id)
    assert still["status"] == "ACTIVE"  # not cancelled


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def read_until(process: subprocess.Popen, marker: str, seconds: float) -> str:
    """stderr of ``process`` up to ``marker`` (bounded in time; unbuffered reads)."""
    assert process.stderr is not None
    seen = ""
    deadline = time.monotonic() + seconds
    while marker not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or process.poll() is not None:
            raise AssertionError(f"no {marker!r} on stderr; got {seen!r}")
        ready, _, _ = select.select([process.stderr], [], [], left)
        if ready:
            seen += os.read(process.stderr.fileno(), 4096).decode()
    return seen
