"""Errors are JSON {code, description}, never HTML: a path no route matches
(404 NotFound, not ActionNotFound), a wrong method (405 with Allow), a body
too large (413) or cut short (400), an unexpected error (500, no details); a
client's value in a description is at most a 64-character prefix (``echo``). Refused run requests
(400): test_validation.py; Globus down (503): test_auth_outages.py."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder, run_wsgi_app

from app.errors import ECHO_CHARACTERS, echo
from tests.helpers import METHODS, UNROUTED, run, start


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


# --- client values in descriptions: a bounded prefix -------------------------------------
LONG = "a1b2c3d4e5" * 300  # 3,000 characters
CUT = "... (cut to 64 of 3000 characters)"
ACTION_ROUTES = [("GET", "/{}/status"), ("GET", "/actions/{}"), ("GET", "/{}/log"),
                 ("GET", "/actions/{}/log"), ("POST", "/{}/cancel"),
                 ("POST", "/actions/{}/cancel"), ("POST", "/{}/resume"),
                 ("POST", "/actions/{}/resume"), ("POST", "/{}/release"),
                 ("DELETE", "/actions/{}")]


@pytest.mark.parametrize(("method", "path"), ACTION_ROUTES)
def test_a_long_action_id_is_cut_in_the_404(client, alice, method, path):
    response = client.open(path.format(LONG), method=method, headers=alice.headers)
    assert response.status_code == 404 and response.json["code"] == "ActionNotFound"
    assert response.json["description"] == f"No action with id {LONG[:64]}{CUT}"
    assert len(response.json["description"]) < 120


@pytest.mark.parametrize(("method", "path"), ACTION_ROUTES)
def test_a_short_action_id_is_quoted_whole(client, alice, method, path):
    action_id = "x" * 64
    response = client.open(path.format(action_id), method=method, headers=alice.headers)
    assert response.json["description"] == f"No action with id {action_id}"


def test_a_long_request_id_is_cut_in_the_409(make_app, alice):
    client = make_app(MAX_REQUEST_ID_LENGTH=4096).test_client()
    assert run(client, alice, request_id=LONG).status_code == 202
    conflict = run(client, alice, request_id=LONG, body={"utc_offset": 2})
    assert conflict.status_code == 409
    assert conflict.json["description"] == (
        f"request_id {LONG[:64]!r}{CUT} was already used for a different request")


@pytest.mark.parametrize("where", ["request", "body"])
def test_a_long_unexpected_property_name_is_cut_in_the_400(client, alice, where):
    document = {"request_id": "r", "body": {"utc_offset": 1}}
    (document if where == "request" else document["body"])[LONG] = 1
    (document if where == "request" else document["body"])["another"] = 2
    response = client.post("/run", headers=alice.headers, json=document)
    assert response.status_code == 400
    path = "$" if where == "request" else "$.body"
    assert response.json["description"] == (
        f"Field '{path}' (category: 'additionalProperties'): unexpected property "
        f"{LONG[:64]!r}{CUT} (and 1 more)")


def test_a_long_method_is_not_echoed(client, alice):
    response = client.open("/run", method="X" * 3000, headers=alice.headers)
    assert response.status_code == 405 and "XXXX" not in response.json["description"]


def test_long_query_values_are_not_echoed(client, alice):
    for query in (f"status={LONG}", f"roles={LONG}", f"limit={LONG}", f"marker={LONG}"):
        response = client.get(f"/actions?{query}", headers=alice.headers)
        assert response.status_code == 400 and LONG[:10] not in response.json["description"]


@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_echo_is_the_value_or_its_cut_prefix(value):
    shown = echo(value)
    if len(value) <= ECHO_CHARACTERS:
        assert shown == value and echo(value, quote=True) == repr(value)
    else:
        assert shown == f"{value[:64]}... (cut to 64 of {len(value)} characters)"


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
