"""`ap-client check` against the test provider: as it should be, and with each
rule broken in turn (each break is reported as that check's failure)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ap_client.check import CHECK_IDS
from ap_client.cli import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, cli
from tests.provider import Provider

# An action of the test provider completes at its 6th status read by its creator:
# after the checks that need it running, at the first poll of status.completes.
READS = 6


def check(url: str, *args: str, other: bool = True) -> Result:
    options = ["--url", url, "--token", "token-alice", "check", "--timeout", "10"]
    if other:
        options += ["--other-token", "token-bob"]
    return CliRunner().invoke(cli, [*options, *args], catch_exceptions=False)


def results(result: Result) -> dict[str, dict]:
    document = json.loads(result.stdout)
    return {c["id"]: c for c in document["checks"]}


def test_a_provider_that_keeps_every_rule_passes_every_check(tmp_path: Path):
    provider = Provider(reads=READS)
    with provider.serve() as url:
        text = check(url, "--junit-xml", str(tmp_path / "junit.xml"))
    assert text.exit_code == 0, text.stdout
    lines = text.stdout.splitlines()
    assert [line.split()[1] for line in lines[:-1]] == list(CHECK_IDS)
    assert all(line.startswith("PASS  ") for line in lines[:-1])
    assert lines[-1] == f"{len(CHECK_IDS)} passed, 0 failed, 0 warned, 0 skipped"
    assert provider.actions == {}  # everything it started was released

    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == str(len(CHECK_IDS))
    assert suite.get("failures") == "0"
    assert [case.get("name") for case in suite.iter("testcase")] == list(CHECK_IDS)


def test_json_is_one_document_with_totals():
    provider = Provider(reads=READS)
    with provider.serve() as url:
        result = check(url, "--json", other=False)
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert set(document) >= {"checks", "passed", "failed", "warned", "skipped"}
    assert (document["passed"], document["failed"], document["warned"]) == (
        len(CHECK_IDS) - 2, 0, 0
    )
    assert document["skipped"] == 2
    checks = {c["id"]: c for c in document["checks"]}
    assert checks["other.isolation"] == {
        "id": "other.isolation", "result": "skip", "message": "no --other-token given"
    }
    assert all(set(c) == {"id", "result", "message"} for c in document["checks"])


@pytest.mark.parametrize("rule", CHECK_IDS)
def test_each_broken_rule_is_reported_as_that_checks_failure(rule: str):
    provider = Provider(breaks={rule}, reads=READS)
    with provider.serve() as url:
        result = check(url, "--json")
    assert result.exit_code == EXIT_FAILED
    outcome = results(result)[rule]
    assert outcome["result"] == "fail", outcome
    assert "expected" in outcome["message"] or "is not" in outcome["message"]
    assert "\n" not in outcome["message"]


def test_a_status_poll_answered_other_than_200_with_a_status_is_a_failure():
    provider = Provider(breaks={"done-status-202"}, reads=READS)
    with provider.serve() as url:
        result = check(url, "--json")
    assert result.exit_code == EXIT_FAILED
    outcome = results(result)["status.completes"]
    assert outcome == {
        "id": "status.completes", "result": "fail",
        "message": "polling the action: expected 200 and its status, got 202",
    }
    assert provider.actions == {}  # released all the same


def test_what_the_spec_allows_is_a_warning_not_a_failure():
    provider = Provider(breaks={"accepts-conflicts"}, reads=READS)
    with provider.serve() as url:
        result = check(url, "--json")
    assert result.exit_code == 0
    conflict = results(result)["run.conflict"]
    assert conflict["result"] == "warn"
    assert conflict["message"] == (
        "the same request_id with another body: expected 409, got 200 "
        "(the spec does not require 409)"
    )


def test_an_action_still_running_at_the_timeout_is_a_warning_and_is_cleaned_up():
    provider = Provider(duration=600)
    with provider.serve() as url:
        result = CliRunner().invoke(
            cli, ["--url", url, "--token", "token-alice", "check", "--json", "--timeout", "1"]
        )
        assert result.exit_code == 0, result.stdout
        outcomes = results(result)
        assert outcomes["status.completes"]["result"] == "warn"
        assert "still running after 1 s" in outcomes["status.completes"]["message"]
        assert outcomes["release.completed"]["result"] == "skip"
        assert provider.actions == {}  # cancelled, then released


def test_optional_operations_a_provider_lacks_are_skipped_with_the_reason():
    provider = Provider(breaks={"minimal"}, reads=READS)
    with provider.serve() as url:
        result = check(url, "--json")
    assert result.exit_code == 0, result.stdout
    outcomes = results(result)
    assert outcomes["resume.running"]["result"] == "skip"
    assert "has no resume" in outcomes["resume.running"]["message"]
    assert outcomes["log.supported"] == {
        "id": "log.supported", "result": "skip", "message": "log_supported is not true"
    }
    assert outcomes["enumerate.lists"]["result"] == "skip"
    assert outcomes["other.isolation"]["result"] == "pass"


def test_a_given_body_is_used_and_without_examples_one_is_asked_for(tmp_path: Path):
    provider = Provider(breaks={"no-examples"}, reads=READS)
    body = tmp_path / "body.json"
    body.write_text('{"n": 41}')
    with provider.serve() as url:
        asked = check(url)
        assert asked.exit_code == EXIT_USAGE
        assert "no examples" in asked.stderr and "pass --body or --body-file" in asked.stderr
        given = check(url, "--json", "--body-file", str(body))
    assert given.exit_code == 0, given.stdout
    assert results(given)["run.accepted"]["result"] == "pass"
    assert [a.request["body"] for a in provider.actions.values()] == []  # all released
    assert {"n": 41} in provider.bodies


def test_an_unreachable_provider_exits_4():
    provider = Provider()
    with provider.serve() as url:
        pass  # stopped: its port now refuses connections
    result = check(url)
    assert result.exit_code == EXIT_UNREACHABLE
    assert result.stderr.strip().startswith(f"Error: could not reach {url}")


def test_bad_options_exit_2_naming_the_option():
    provider = Provider()
    with provider.serve() as url:
        not_json = check(url, "--body", "{")
        both = check(url, "--body", "{}", "--body-file", "-")
    assert not_json.exit_code == both.exit_code == EXIT_USAGE
    assert "--body is not valid JSON" in not_json.stderr
    assert "give one of --body, --body-file" in both.stderr
    assert provider.requests == []
