"""Helpers shared by the test files (fixtures are in conftest.py and the
project's plugin, app.testing.plugin)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient
from globus_action_provider_tools.data_types import ActionStatus
from werkzeug.test import TestResponse

from app.testing import User
from tests.spec import assert_conforms

# Dev mode's tokens (AUTH_MODE=dev): what e2e tests send to a dev-mode server.
DEV_ALICE = {"Authorization": "Bearer dev-token-alice"}
DEV_BOB = {"Authorization": "Bearer dev-token-bob"}

RESUME_PATHS = ("/{}/resume", "/actions/{}/resume")
# Paths no route matches (404 NotFound), and the methods to try them with.
UNROUTED = ["/does/not/exist", "/actions/x/y/z", "/run/", "/healthz/", "/x/resume/", "/a/b"]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def run(
    client: FlaskClient,
    user: User,
    body: Any = None,
    request_id: str | None = None,
    path: str = "/run",
    **extra: Any,
) -> TestResponse:
    """POST a run request (a fresh request_id, ``{"utc_offset": 1}`` unless
    given) as ``user``; the response, whatever it is."""
    document = {
        "request_id": request_id or str(uuid.uuid4()),
        "body": {"utc_offset": 1} if body is None else body,
        **extra,
    }
    return client.post(path, headers=user.headers, json=document)


def start(client: FlaskClient, user: User, path: str = "/actions", **fields: Any) -> str:
    """Start an action with run(), on the /actions path unless told, and
    return its id (it must be a 202)."""
    response = run(client, user, path=path, **fields)
    assert response.status_code == 202, response.json
    return str(response.json["action_id"])


def assert_status_document(document: dict[str, Any]) -> None:
    """A status the spec and the library's model accept, with no nulls and
    nothing private in it."""
    assert_conforms(document, "ActionStatus")
    ActionStatus.parse_obj(document)  # the library's model accepts it too
    assert None not in document.values()
    assert "private" not in json.dumps(document)


def completed_status(
    get_status: Callable[[], dict[str, Any]], seconds: float = 15
) -> dict[str, Any]:
    """Ask ``get_status()`` for an action's status until it is no longer
    ACTIVE; fail if it still is after ``seconds``."""
    deadline = time.monotonic() + seconds
    while (status := get_status())["status"] == "ACTIVE":
        assert time.monotonic() < deadline, f"still ACTIVE after {seconds} s"
        time.sleep(0.05)
    return status
