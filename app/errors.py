"""Every error leaves as the library's JSON error body: {"code", "description"}."""

from __future__ import annotations

import json
import logging
import socket

from flask import Flask, Response
from globus_action_provider_tools.flask.exceptions import (
    ActionConflict,
    ActionProviderError,
    ActionProviderToolsException,
    BadActionRequest,
    UnauthorizedRequest,
)
from werkzeug.exceptions import (
    Forbidden,
    HTTPException,
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
    ServiceUnavailable,
)

from app import store

log = logging.getLogger(__name__)

# The library's class for each status it has one for; others get a class below.
_LIBRARY_CLASSES: dict[int, type[ActionProviderToolsException]] = {
    400: BadActionRequest,
    401: UnauthorizedRequest,
    409: ActionConflict,
    500: ActionProviderError,
}


class ActionForbidden(ActionProviderToolsException, Forbidden):
    pass


class ActionMethodNotAllowed(ActionProviderToolsException, MethodNotAllowed):
    def get_headers(self, *args: object) -> list[tuple[str, str]]:
        headers = super().get_headers(*args)
        if self.valid_methods:
            headers.append(("Allow", ", ".join(self.valid_methods)))
        return headers


class RouteNotFound(ActionProviderToolsException, NotFound):
    """A path no route matches. Its code is ``NotFound``, so that a client can
    tell a wrong URL from an unknown action (``ActionNotFound``)."""

    @property
    def name(self) -> str:
        return "NotFound"


class RequestTooLarge(ActionProviderToolsException, RequestEntityTooLarge):
    pass


class AuthUnavailable(ActionProviderToolsException, ServiceUnavailable):
    """Globus Auth could not be asked; the caller should retry."""

    retry_after_seconds = 5

    def get_headers(self, *args: object) -> list[tuple[str, str]]:
        return [*super().get_headers(*args), ("Retry-After", str(self.retry_after_seconds))]


class StoreUnavailable(AuthUnavailable):
    """The action store did not answer (database down, locked, unreachable)."""


class BearerUnauthorized(UnauthorizedRequest):
    """401 with the challenge header RFC 6750 asks for."""

    @property
    def name(self) -> str:
        return "UnauthorizedRequest"

    def get_headers(self, *args: object) -> list[tuple[str, str]]:
        return [*super().get_headers(*args), ("WWW-Authenticate", "Bearer")]


def as_json_error(error: HTTPException) -> ActionProviderToolsException:
    """The same error as one of the library's JSON exceptions."""
    if isinstance(error, ActionProviderToolsException):
        return error
    if isinstance(error, MethodNotAllowed):
        return ActionMethodNotAllowed(valid_methods=error.valid_methods)
    if isinstance(error, NotFound):
        return RouteNotFound("No such path on this provider.")
    if isinstance(error, RequestEntityTooLarge):
        return RequestTooLarge("The request body is larger than this provider accepts.")
    cls = _LIBRARY_CLASSES.get(error.code or 500)
    if cls is None:
        cls = type(type(error).__name__, (ActionProviderToolsException, type(error)), {})
    return cls(error.description)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        return as_json_error(error).get_response()

    @app.errorhandler(store.StoreUnavailable)
    def store_unavailable(error: store.StoreUnavailable) -> Response:
        log.error("action store unavailable: %s", error)
        message = "The action store is unavailable; try again shortly."
        return StoreUnavailable(message).get_response()

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception) -> Response:
        log.exception("unhandled error")
        return ActionProviderError("Internal Server Error").get_response()


def write_gunicorn_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's own error answer (a request it cannot parse: request line or
    headers too long, a malformed header) as JSON instead of its HTML page.

    Installed over ``gunicorn.util.write_error`` by gunicorn.conf.py; same
    signature and framing (the connection is closed after it).
    """
    from gunicorn.util import write_nonblock

    code = _LIBRARY_CLASSES.get(status_int)
    body = json.dumps({
        "code": code.__name__ if code else "".join(reason.title().split()),
        "description": f"{reason}: {mesg}"[:300],
    }).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    write_nonblock(sock, head.encode("latin-1") + body)
