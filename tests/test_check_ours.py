"""`ap-client check` against this service, through the real server, on the memory
and PostgreSQL stores: every check passes (the second caller included)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ap_client.check import CHECK_IDS
from ap_client.cli import cli
from app import create_app
from tests.server import serve

pytestmark = pytest.mark.e2e
SHORT = {"FLASK_MIN_DELAY_SECONDS": "2", "FLASK_MAX_DELAY_SECONDS": "2.5"}
# Until the service serves POST /<id>/resume, such a path answers 404
# ActionNotFound, which the checker cannot tell from a missing action.
WITHOUT_RESUME = {"auth.no_token", "auth.bad_token", "resume.running"}


def serves_resume() -> bool:
    app = create_app({"AUTH_MODE": "dev", "STORE_URL": "memory://"})
    return any(rule.rule.endswith("/resume") for rule in app.url_map.iter_rules())


def check(url: str) -> tuple[int, dict[str, dict]]:
    result = CliRunner().invoke(
        cli,
        ["--url", url, "--token", "dev-token-alice", "--json",
         "check", "--other-token", "dev-token-bob", "--timeout", "30"],
        catch_exceptions=False,
    )
    document = json.loads(result.stdout)
    assert [c["id"] for c in document["checks"]] == list(CHECK_IDS)
    return result.exit_code, {c["id"]: c for c in document["checks"]}


def assert_conforms(exit_code: int, checks: dict[str, dict]) -> None:
    not_passed = {i: c for i, c in checks.items() if c["result"] != "pass"}
    if serves_resume():
        assert not_passed == {} and exit_code == 0
        return
    assert set(not_passed) == WITHOUT_RESUME and exit_code == 1, not_passed
    for outcome in not_passed.values():
        assert outcome["result"] == "fail"
        assert "/resume: 404 ActionNotFound" in outcome["message"]


@pytest.mark.parametrize("store", ["memory", "postgresql"])
def test_every_check_passes_against_this_service(store, request, shared_rates):
    env = dict(SHORT)
    workers = 1
    if store == "postgresql":
        env["FLASK_STORE_URL"] = request.getfixturevalue("postgres_url")
        env.update(shared_rates)
        workers = 2  # the second request may land on the other worker
    with serve(env, workers=workers) as url:
        exit_code, checks = check(url)
        listed = CliRunner().invoke(
            cli, ["--url", url, "--token", "dev-token-alice", "--json", "list",
                  "--status", "active,inactive,succeeded,failed"],
        )
    assert_conforms(exit_code, checks)
    assert json.loads(listed.stdout)["actions"] == []  # the checker cleaned up after itself
