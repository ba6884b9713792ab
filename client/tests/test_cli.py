"""ap-client's commands against the test provider (real HTTP on a loopback port)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ap_client.cli import EXIT_HTTP, EXIT_USAGE, cli
from ap_client.waiting import MAX_TRANSIENT_FAILURES
from tests.provider import Provider


def ap(url: str, *args: str, token: str = "token-alice"):
    return CliRunner().invoke(cli, ["--url", url, "--token", token, *args], catch_exceptions=False)


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("127.0.0.1:5000", "did you mean http://127.0.0.1:5000?"),
        ("localhost", "did you mean http://localhost?"),
        ("ftp://example.org", "is not an http:// or https:// URL"),
        ("http://", "is not an http:// or https:// URL with a host"),
        ("http://example.org/?x=1", "has no query or fragment"),
    ],
)
def test_a_url_that_is_not_http_is_a_bad_option(url, says):
    result = ap(url, "status", "x")
    assert result.exit_code == EXIT_USAGE
    assert last_line(result.stderr).startswith("Error: Invalid value for '--url': ")
    assert says in result.stderr


def test_list_takes_comma_separated_and_repeated_values_alike(url, provider: Provider):
    started = json.loads(ap(url, "--json", "run", "--body", '{"n": 1}').stdout)
    commas = ap(url, "--json", "list", "--status", "active,Succeeded", "--role", "creator_id")
    repeated = ap(url, "--json", "list", "--status", "active", "--status", "succeeded")
    assert commas.exit_code == repeated.exit_code == 0, commas.stderr
    assert json.loads(commas.stdout) == json.loads(repeated.stdout)
    assert [a["action_id"] for a in json.loads(commas.stdout)["actions"]] == [
        started["action_id"]
    ]


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("list", "--status", "succeeded,faild"), "'--status': 'faild' is not one of"),
        (("list", "--role", "owner"), "'--role': 'owner' is not one of"),
        (("run", "--body", "{}", "--deadline", "tomorrow"), "'--deadline': 'tomorrow'"),
        (("run", "--body", "{}", "--deadline", "2030-01-01T00:00:00"), "'--deadline'"),
        (("run", "--body", "{}", "--release-after", "30d"), "'--release-after': '30d'"),
        (("run", "--body", "{}", "--allowed-clients", "everyone"), "'--allowed-clients'"),
        (("run", "--body", "[1]"), "--body must be a JSON object"),
        (("run", "--body", "{"), "--body is not valid JSON"),
        (("run",), "give exactly one of --body, --body-file, --utc-offset"),
        (("--timeout", "0", "status", "x"), "'--timeout'"),
    ],
)
def test_every_validation_error_names_its_option(url, provider: Provider, args, option):
    result = ap(url, *args)
    assert result.exit_code == EXIT_USAGE
    assert option in result.stderr
    assert provider.requests == []  # refused before anything was sent


def test_run_sends_deadline_release_after_and_allowed_clients(url, provider: Provider):
    result = ap(
        url, "--json", "run", "--body", '{"n": 3}', "--deadline", "2030-01-02T03:04:05Z",
        "--release-after", "PT1H", "--allowed-clients", "creator,globus",
        "--allowed-clients", "public",
    )
    assert result.exit_code == 0, result.stderr
    (action,) = provider.actions.values()
    assert action.request["deadline"] == "2030-01-02T03:04:05Z"
    assert action.request["release_after"] == "PT1H"
    assert action.request["allowed_clients"] == ["creator", "globus", "public"]


def test_wait_gives_up_when_the_provider_goes_away_and_says_how_to_resume(url, provider):
    provider.duration = provider.duration * 600
    provider.status_failures = 10**6  # every status poll: 503 with Retry-After: 0
    result = ap(url, "run", "--body", '{"n": 1}', "--wait")
    (action_id,) = provider.actions
    assert result.exit_code == EXIT_HTTP
    lines = result.stderr.strip().splitlines()
    assert lines[-3] == (
        f"Error: 503 ServiceUnavailable: busy (retry after 0 s); "
        f"gave up after {MAX_TRANSIENT_FAILURES} failed polls in a row"
    )
    assert lines[-1] == f"Resume with: ap-client --url {url} status --wait {action_id}"


@pytest.mark.parametrize("as_json", [False, True])
def test_release_says_what_it_did(as_json: bool):
    provider = Provider(reads=1)  # completes at its first status read
    with provider.serve() as url:
        action_id = json.loads(ap(url, "--json", "run", "--body", '{"n": 1}').stdout)["action_id"]
        final = json.loads(ap(url, "--json", "status", action_id).stdout)
        released = ap(url, *(["--json"] if as_json else []), "release", action_id)
    assert released.exit_code == 0, released.stderr
    assert last_line(released.stderr) == (
        f"Released action {action_id} (SUCCEEDED): "
        "the provider no longer keeps it; the status above was its last."
    )
    if as_json:
        assert json.loads(released.stdout) == final  # the provider's document, alone
    else:
        assert f"action_id        {action_id}" in released.stdout.splitlines()
        assert "status           SUCCEEDED" in released.stdout.splitlines()
    assert provider.actions == {}
