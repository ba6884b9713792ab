"""`ap-client check` against a provider made only of the library's
ActionProviderBlueprint and its documented callbacks (tests/library_provider.py),
Globus Auth faked over HTTP: the checker runs to the end and reports exactly
where such a provider differs from the spec and from what Globus Flows expects.
"""

from __future__ import annotations

import json

from click.testing import CliRunner

from ap_client.check import CHECK_IDS
from ap_client.cli import cli
from app.testing import FakeGlobus, User
from tests.library_provider import make_app, serve

CLIENT_ID = "00000000-0000-4000-8000-00000000aaaa"

# What the library's way does differently, each as the checker reports it:
# (result, a part of its message).
DIFFERENCES = {
    # Unset optional fields are sent as null, and types as ["ACTION"].
    "introspect.schema": (
        "fail", "administered_by, description, event_types, keywords, subtitle are null"
    ),
    # The blueprint checks the token before its OPTIONS (CORS) branch runs.
    "introspect.cors": ("fail", "got 401 UnauthorizedRequest"),
    # A running action's completion_time is sent as null.
    "run.accepted": ("fail", "completion_time is null"),
    # The blueprint answers every run 202, a retry of the same request too.
    "run.idempotent": ("warn", "expected 200 and action_id"),
    # Its request validation is a 422 (RequestValidationError), not the spec's 400.
    "run.invalid_body": ("fail", "got 422 RequestValidationError"),
    # Enumeration is a plain list: no paging.
    "enumerate.paging": ("skip", "no paging"),
    # authorize_action_*_or_404 raise AuthenticationError, which the blueprint
    # answers 401: another user learns the action exists.
    "other.isolation": ("fail", "got GET /"),
}


def test_the_checker_reports_how_the_library_blueprint_differs(
    globus: FakeGlobus, alice: User, bob: User
):
    globus.mock.add_passthru("http://127.0.0.1")  # the provider itself is real HTTP
    app = make_app(alice.scope, CLIENT_ID, "not-a-real-secret", seconds=2.0)
    with serve(app) as url:
        result = CliRunner().invoke(
            cli,
            ["--url", url, "--token", alice.token, "--json",
             "check", "--other-token", bob.token, "--timeout", "30"],
            catch_exceptions=False,
        )
    document = json.loads(result.stdout)
    checks = {c["id"]: c for c in document["checks"]}
    assert list(checks) == list(CHECK_IDS)  # ran to the end
    differences = {i: c for i, c in checks.items() if c["result"] != "pass"}
    assert set(differences) == set(DIFFERENCES), json.dumps(document, indent=1)
    for check_id, (expected, says) in DIFFERENCES.items():
        assert differences[check_id]["result"] == expected
        assert says in differences[check_id]["message"], differences[check_id]
    assert "401 UnauthorizedRequest" in checks["other.isolation"]["message"]
    assert "types.0: 'ACTION' is not one of" in checks["introspect.schema"]["message"]
    assert result.exit_code == 1
    assert document["left_behind"] == []
