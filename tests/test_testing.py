"""app.testing and its pytest plugin: the fake Globus behaves as Globus does
for the library's real auth code, and the service never imports the test
helpers. (docs/testing.md's example test file is run by tests/test_docs.py.)"""

from __future__ import annotations

import subprocess
import sys
import uuid

from app.testing import INTROSPECT_URL, MY_GROUPS_URL, clear_auth_caches
from tests.helpers import start
from tests.server import ROOT


def test_linked_identities_are_the_same_caller(client, globus, alice):
    other_identity = str(uuid.uuid4())
    carol = globus.user("carol", linked=[other_identity])
    assert carol.linked_urns == [f"urn:globus:auth:identity:{other_identity}"]
    action_id = start(client, alice, monitor_by=carol.linked_urns)
    assert client.get(f"/{action_id}/status", headers=carol.headers).status_code == 200
    # The caller's own action lists all its identities as default managers.
    own = client.get(f"/{start(client, carol)}/status", headers=carol.headers).json
    assert sorted(own["manage_by"]) == sorted([carol.urn, *carol.linked_urns])


def test_groups_grant_what_their_urn_is_given(client, globus, alice, bob):
    team = globus.group(bob)
    assert team.startswith("urn:globus:groups:id:") and bob.groups == [team.rsplit(":", 1)[1]]
    outsider = globus.user("outsider", groups=[str(uuid.uuid4())])
    action_id = start(client, alice, monitor_by=[team])
    assert client.get(f"/{action_id}/status", headers=bob.headers).status_code == 200
    assert client.get(f"/{action_id}/status", headers=outsider.headers).status_code == 404
    assert globus.group_lookups == 2


def test_groups_down_denies_then_recovers(client, globus, alice, bob):
    action_id = start(client, alice, monitor_by=[globus.group(bob)])
    globus.groups_down()
    assert client.get(f"/{action_id}/status", headers=bob.headers).status_code == 404
    assert globus.calls_to(MY_GROUPS_URL) >= 1
    globus.recover()
    assert client.get(f"/{action_id}/status", headers=bob.headers).status_code == 200


def test_inactive_and_wrong_scope_tokens_are_refused(client, globus, alice):
    revoked = globus.user("eve", active=False)
    elsewhere = globus.user("mallory", scope="urn:globus:auth:scope:transfer.api.globus.org:all")
    for user in (revoked, elsewhere):
        response = client.get("/", headers=user.headers)
        assert response.status_code == 401 and response.json["code"] == "UnauthorizedRequest"
    assert client.get("/", headers=alice.headers).status_code == 200
    alice.active = False  # revoked now: seen once its cached introspection is gone
    assert client.get("/", headers=alice.headers).status_code == 200
    clear_auth_caches()
    assert client.get("/", headers=alice.headers).status_code == 401


def test_auth_down_is_503_then_recovers(client, globus, alice):
    globus.auth_down()
    response = client.get("/", headers=alice.headers)
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert globus.calls_to(INTROSPECT_URL) == 2  # the SDK's one retry
    assert globus.introspections == 0
    globus.recover()
    assert client.get("/", headers=alice.headers).status_code == 200
    assert globus.introspections == 1


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_the_service_never_imports_the_test_helpers():
    result = python(
        "import sys\n"
        "from app import create_app\n"
        "app = create_app({'AUTH_MODE': 'dev', 'LOG_LEVEL': 'CRITICAL'})\n"
        "headers = {'Authorization': 'Bearer dev-token-alice'}\n"
        "assert app.test_client().get('/', headers=headers).status_code == 200\n"
        "print(sorted(m for m in sys.modules if m == 'responses' or m.startswith('app.testing')))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_without_responses_the_module_imports_and_the_fake_says_what_to_install():
    result = python(
        "import sys\n"
        "sys.modules['responses'] = None  # as if it were not installed\n"
        "import app.testing\n"
        "user = app.testing.User('alice', 'token-of-alice')\n"
        "try:\n"
        "    app.testing.fake_globus().__enter__()\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "app.testing needs the test requirements: pip install -r requirements-dev.txt"
    )
