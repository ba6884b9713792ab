"""The path of a request, in order, and where each step happens.

 1. The client's address: a trusted reverse proxy's X-Forwarded-For is
    believed (``app.proxy.TrustedProxyFix``, around the Flask app).
 2. Request id and timer: ``app.observability`` (its before_request,
    registered first by ``app.factory.create_app``).
 3. This module's one before_request hook, ``check_request``, in this order:
    a. dev mode only: loopback clients only (``loopback_only``);
    b. routing: a path or method no view takes is a 404/405 now, before
       Globus Auth is asked;
    c. token: the library's AuthState of the caller into ``g.auth_state``
       (``check_token``; the library's builder, hardened in ``app.auth``);
    d. authorization: who may see the provider (VISIBLE_TO, for ``GET /``)
       or run actions (RUNNABLE_BY, for a run), 403 for anyone else, before
       a body is read (``authorize``; the library's
       ``AuthState.check_authorization``);
    e. body: for a view marked ``@takes_run_request``, the run request parsed
       and validated into ``g.action_request`` (``validate_run_request``;
       ``app.validation``);
    f. rates: the caller's run or GET rate, 429 over it (``check_rate``;
       ``app.ratelimit``: it needs the caller, and for a run its request_id).
 4. The view (``app.routes``), and the rules (``app.actions.ActionService``:
    the caller's rights on the action, what its status is).
 5. The store: the rules read and write the action there (``app.store``:
    memory, SQLite or PostgreSQL).
 6. The answer, as JSON (the library's JSON provider). An exception at any step
    becomes a JSON {code, description} answer (``app.errors``).
 7. The request log line, the metrics and the ``X-Request-ID`` header, for
    every answer, errors too: ``app.observability`` (its after_request);
    ``Connection: close`` on an answer given without reading the request's
    body (``close_if_body_unread``, this module's after_request).

A view declares what it needs of step 3: ``@public`` (answered without a
token), ``@allowed_by(SETTING)`` (only the principals that setting lists;
none needs a token when it lists "public") and ``@takes_run_request``.
Nothing else decides.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any

import globus_sdk
from flask import Flask, Request, Response, current_app, g, request
from globus_action_provider_tools.errors import AuthenticationError
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from app.auth import AuthResponseMalformed, ProviderAuthStateBuilder
from app.errors import ActionForbidden, AuthUnavailable, BearerUnauthorized
from app.ratelimit import check_rate
from app.validation import RunRequestValidator, parse_json

log = logging.getLogger(__name__)

View = Callable[..., Any]
# Headers a reverse proxy adds (Forwarded, X-Forwarded-For, X-Real-IP), as WSGI
# names them; dev mode refuses requests carrying them.
PROXY_HEADERS = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP")
# Added to a dev-mode 401, so that a person trying the service finds the form.
DEV_MODE_HINT = "In dev mode, send 'Authorization: Bearer dev-token-<name>'."


def public(view: View) -> View:
    """The view answers without a token (health checks, metrics)."""
    view.public = True  # type: ignore[attr-defined]
    return view


def allowed_by(setting: str, refusal: str) -> Callable[[View], View]:
    """Only callers among the principals of ``setting`` (VISIBLE_TO or
    RUNNABLE_BY) reach the view; others get 403 ``refusal``. A setting that
    lists "public" lets the view answer without a token, as the library's
    blueprint does for introspection."""

    def mark(view: View) -> View:
        view.allowed_by = (setting, refusal)  # type: ignore[attr-defined]
        return view

    return mark


def takes_run_request(view: View) -> View:
    """The view's POST body is a run request, validated into ``g.action_request``
    before the view is called."""
    view.takes_run_request = True  # type: ignore[attr-defined]
    return view


def check_request() -> None:
    """Step 3 of the module's docstring, a to e in order."""
    # The objects behind Flask's proxies, looked up once and passed on.
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    if app.config["AUTH_MODE"] == "dev":
        loopback_only(req)
    if req.routing_exception is not None:
        raise req.routing_exception
    view = app.view_functions[req.endpoint]
    check_token(app, req, view)
    authorize(app, view)
    validate_run_request(app, req, view)
    check_rate(app, req, view)


def close_if_body_unread(response: Response) -> Response:
    """``Connection: close`` on an answer given without reading the request's
    body (a 401 before the body of a run, a cancel sent with a body).

    granian closes such a connection once the answer is sent, without saying
    so when the body was still on its way: the client's next request on it
    then fails. gunicorn reads the rest instead; reading it here would let
    anyone without a token hold a thread for as long as they trickle a body.
    """
    environ = request.environ
    sized_body = environ.get("CONTENT_LENGTH", "") not in ("", "0")
    chunked_body = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "")
    if (sized_body or chunked_body) and not g.get("body_read"):
        response.headers["Connection"] = "close"
    return response


def is_loopback(address: str) -> bool:
    """Is this client address a loopback address?"""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def loopback_only(req: Request) -> None:
    """Dev tokens are guessable: serve only this machine's own clients. A
    request relayed by a proxy (which would connect from loopback) is refused."""
    if any(name in req.environ for name in PROXY_HEADERS):
        raise ActionForbidden("This provider runs in dev mode: no proxied clients.")
    if not is_loopback(req.remote_addr or ""):
        raise ActionForbidden("This provider runs in dev mode: loopback clients only.")


def check_token(app: Flask, req: Request, view: View) -> None:
    """Build the caller's AuthState (library path) into ``g.auth_state``."""
    if req.method == "OPTIONS" or getattr(view, "public", False) or open_to_public(app, view):
        return
    builder: ProviderAuthStateBuilder = app.extensions["auth_state_builder"]
    try:
        g.auth_state = builder.build_from_request(request=req)
    except AuthenticationError as error:
        description = str(error)
        if app.config["AUTH_MODE"] == "dev":
            description += f". {DEV_MODE_HINT}"
        raise BearerUnauthorized(description) from None
    except globus_sdk.GlobusAPIError as error:
        if error.http_status in (400, 401, 403):
            log.error(
                "Globus Auth rejected this provider's own client credentials "
                "(HTTP %s): check CLIENT_ID and CLIENT_SECRET",
                error.http_status,
            )
        else:
            log.warning("Globus Auth answered HTTP %s to introspection", error.http_status)
        raise AuthUnavailable("Globus Auth is unavailable; try again shortly.") from None
    except globus_sdk.NetworkError as error:
        log.warning("Globus Auth unreachable: %s", type(error).__name__)
        raise AuthUnavailable("Globus Auth is unavailable; try again shortly.") from None
    except AuthResponseMalformed:
        log.error("Globus Auth answered token introspection with a malformed document")
        raise AuthUnavailable("Globus Auth is unavailable; try again shortly.") from None


def open_to_public(app: Flask, view: View) -> bool:
    """Does the view's ``allowed_by`` setting list "public"?"""
    rule = getattr(view, "allowed_by", None)
    return rule is not None and "public" in app.config[rule[0]]


def authorize(app: Flask, view: View) -> None:
    """403 unless the caller is among the principals of the view's
    ``allowed_by`` setting (a group there costs a Globus Groups call, cached).
    Nothing to check without a token: OPTIONS, or a setting with "public"."""
    rule = getattr(view, "allowed_by", None)
    caller = g.get("auth_state")
    if rule is None or caller is None:
        return
    setting, refusal = rule
    if not caller.check_authorization(
        app.config[setting], allow_public=True, allow_all_authenticated_users=True
    ):
        raise ActionForbidden(refusal)


def validate_run_request(app: Flask, req: Request, view: View) -> None:
    """Parse and validate the body of a run request into ``g.action_request``,
    for a view that ``takes_run_request``.

    POST only: an OPTIONS request (answered without a token) must not reveal
    what validation thinks of its body.
    """
    if req.method != "POST" or not getattr(view, "takes_run_request", False):
        return
    validator: RunRequestValidator = app.extensions["run_validator"]
    g.action_request = validator.validate(parse_json(read_body(app, req)))


def read_body(app: Flask, req: Request) -> bytes:
    """The request body: 413 beyond MAX_CONTENT_LENGTH, 400 if the client sends
    less than its Content-Length, a chunked body read whole.

    Not werkzeug's ``get_data``: behind a server that sets
    ``wsgi.input_terminated`` (gunicorn, granian) it reads up to the limit
    rather than the Content-Length, so a body cut short passes unnoticed, and
    a chunked body past the limit is cut at it without a word.
    """
    length = req.content_length
    limit = app.config["MAX_CONTENT_LENGTH"]
    if length is not None and length > limit:
        raise RequestEntityTooLarge()
    wanted = limit + 1 if length is None else length  # one byte past the limit tells
    stream = req.environ["wsgi.input"]
    g.body_read = True
    data = b""
    while len(data) < wanted and (more := stream.read(wanted - len(data))):
        data += more
    if length is None and len(data) > limit:
        raise RequestEntityTooLarge()
    if length is not None and len(data) < length:
        raise ClientDisconnected()  # a 400, as werkzeug answers a body cut short
    return data
