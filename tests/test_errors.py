"""Errors are JSON {code, description}, never HTML: a path no route matches
(404 NotFound, not ActionNotFound), a wrong method (405 with Allow), a body
too large (413) or cut short (400), an unexpected error (500, no details). Refused run requests
(400): test_validation.py; Globus down (503): test_auth_outages.py."""

from __future__ import annotations

import io
import json

import pytest
from werkzeug.test import EnvironBuilder, run_wsgi_app

from tests.helpers import METHODS, UNROUTED, start


# --- 404: a path no route matches --------------------------------------------------------
def test_a_path_no_route_matches_is_404_not_found(client, alice):
    """Not ``ActionNotFound``: a client can tell a wrong URL from a missing action."""
    for path in UNROUTED:
        for method in METHODS:
            for headers in (alice.headers, {}):
                response = client.open(path, method=method, headers=headers)
                assert response.status_code == 404, (method, path)
                assert response.json == {
                    "code": "NotFound", "description": "No such path on this provider."
                }, (method, path)
        head = client.head(path, headers=alice.headers)
        assert head.status_code == 404 and head.content_type == "application/json"


def test_extra_slashes_are_404_json_not_redirects(client, alice):
    """Werkzeug answered "/actions//ID" with an HTML 308 redirect to "/actions/ID"."""
    action_id = start(client, alice)
    for method, path in [
        ("GET", f"/actions//{action_id}"), ("GET", f"/{action_id}//status"),
        ("GET", f"/actions/{action_id}//log"), ("POST", f"/actions//{action_id}/cancel"),
        ("POST", f"/{action_id}//release"), ("DELETE", f"/actions//{action_id}"),
        ("POST", "/run/"), ("POST", "/actions/"), ("GET", "/actions/"),
        ("GET", f"/{action_id}/status/"), ("GET", f"/actions/{action_id}/"),
        ("GET", "/healthz/"),
    ]:
        response = client.open(path, method=method, headers=alice.headers)
        assert response.status_code == 404, (method, path, response.status_code)
        assert response.json["code"] == "NotFound", path
    assert client.get(f"/actions/{action_id}", headers=alice.headers).status_code == 200


# --- 405 ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("put", "/actions/some-id", {"GET", "DELETE"}),
        ("post", "/actions/some-id", {"GET", "DELETE"}),
        ("patch", "/actions", {"GET", "POST"}),
        ("get", "/actions/some-id/cancel", {"POST"}),
        ("delete", "/actions/some-id/log", {"GET"}),
        ("post", "/some-id/log", {"GET"}),
        ("post", "/", {"GET", "OPTIONS"}),
        ("delete", "/run", {"POST"}),
        ("get", "/some-id/resume", {"POST"}),
        ("get", "/actions/some-id/resume", {"POST"}),
    ],
)
def test_wrong_method_is_405_json_with_allow(client, alice, method, path, allowed):
    response = getattr(client, method)(path, headers=alice.headers)
    assert response.status_code == 405 and response.json["code"] == "ActionMethodNotAllowed"
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}


def test_options_on_run_does_not_validate_without_a_token(client, globus):
    """OPTIONS is answered without a token; it used to run body validation
    and answer 400 with what it thought of the body."""
    response = client.options("/run", data=b'{"request_id": ""}')
    assert response.status_code == 200 and response.data == b""
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"POST", "OPTIONS"}
    assert globus.introspections == 0


# --- 413, 500 ----------------------------------------------------------------------------
def test_too_large_body_is_413_json(client, alice):
    body = json.dumps({"request_id": "big", "body": {"utc_offset": 1}, "label": "x" * 70_000})
    response = client.post("/run", headers=alice.headers, data=body)
    assert response.status_code == 413 and response.is_json


def post_run(app, user, body: bytes, content_length: int | None) -> tuple[int, dict]:
    """POST /run as a server hands it to the app: the body in ``wsgi.input``,
    which ends with the body; chunked (``content_length`` None) or declared."""
    environ = EnvironBuilder(path="/run", method="POST", headers=user.headers,
                             content_type="application/json").get_environ()
    environ["wsgi.input"] = io.BytesIO(body)
    environ["wsgi.input_terminated"] = True
    environ.pop("CONTENT_LENGTH", None)
    if content_length is not None:
        environ["CONTENT_LENGTH"] = str(content_length)
    answer, status, _headers = run_wsgi_app(app, environ, buffered=True)
    return int(status.split()[0]), json.loads(b"".join(answer))


def test_a_chunked_body_is_read_whole(app, alice):
    body = json.dumps({"request_id": "chunked", "body": {"utc_offset": 1}}).encode()
    status, document = post_run(app, alice, body, None)
    assert status == 202 and document["status"] == "ACTIVE"


def test_a_chunked_body_past_the_limit_is_413_json(app, alice):
    limit = app.config["MAX_CONTENT_LENGTH"]
    body = json.dumps({"request_id": "big", "body": {"utc_offset": 1}, "label": "x"}).encode()
    padded = body[:-1] + b" " * (limit + 1 - len(body)) + b"}"  # valid JSON, one byte too many
    assert post_run(app, alice, padded, None) == (
        413, {"code": "RequestTooLarge",
              "description": "The request body is larger than this provider accepts."})
    at_limit = body[:-1] + b" " * (limit - len(body)) + b"}"
    assert post_run(app, alice, at_limit, None)[0] == 202


def test_a_body_shorter_than_its_content_length_is_400_json(app, alice):
    body = json.dumps({"request_id": "short", "body": {"utc_offset": 1}}).encode()
    status, document = post_run(app, alice, body, len(body) + 5)
    assert status == 400 and document["code"] == "BadActionRequest"
    assert post_run(app, alice, body, len(body))[0] == 202


def test_unexpected_error_is_500_json_without_details(app, alice, caplog):
    @app.get("/boom")
    def boom():
        raise RuntimeError("internal detail")

    response = app.test_client().get("/boom", headers=alice.headers)
    assert response.status_code == 500
    assert response.json == {"code": "ActionProviderError", "description": "Internal Server Error"}


def test_no_debug_mode(app):
    assert app.debug is False
