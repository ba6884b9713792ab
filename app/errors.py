"""Every error leaves as the library's JSON error body, {"code", "description"},
rendered here (``error_response``): the library's errors and ours below by
their class name, werkzeug's by status (``_CODES``), a store outage as
StoreUnavailable, anything else as a 500 without details.

The server answers a few requests itself, before the app: granian sends 431
with an empty body for headers over 64 KiB and 400 with an empty body for
malformed HTTP."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable

from flask import Flask, Response, current_app
from globus_action_provider_tools.flask.exceptions import (
    ActionProviderToolsException,
    UnauthorizedRequest,
)
from werkzeug.exceptions import Forbidden, HTTPException, ServiceUnavailable

from app import store

log = logging.getLogger(__name__)

# The code of an error that is not one of the library's (werkzeug's own, from
# routing or body reading), by status: the library's name where it has one.
_CODES = {
    400: "BadActionRequest",
    401: "UnauthorizedRequest",
    403: "ActionForbidden",
    404: "NotFound",  # no route: not ActionNotFound, so a wrong URL is told from a gone action
    405: "ActionMethodNotAllowed",
    409: "ActionConflict",
    413: "RequestTooLarge",
    500: "ActionProviderError",
}
_DESCRIPTIONS = {
    404: "No such path on this provider.",
    413: "The request body is larger than this provider accepts.",
}
RETRY_AFTER_SECONDS = 5
# Room for a new action comes when actions are released (or reach their
# release_after), which the provider cannot foresee. A minute keeps a waiting
# client's retries cheap (one count each) and lets a flow waiting for room go
# on within a minute of Globus Flows releasing the actions of finished runs.
ROOM_RETRY_AFTER_SECONDS = 60
# The most of a client's value an error description quotes: room for an
# action id (a UUID, 36) or a principal URN (61), not for a client's essay.
ECHO_CHARACTERS = 64


def echo(value: str, *, quote: bool = False) -> str:
    """A client's value as an error description quotes it (``repr``-quoted if
    ``quote``): whole if short, else its first ECHO_CHARACTERS characters and
    a note that it was cut, so that a description stays short whatever the
    client sent."""
    shown = value[:ECHO_CHARACTERS]
    text = repr(shown) if quote else shown
    if len(value) <= ECHO_CHARACTERS:
        return text
    return f"{text}... (cut to {ECHO_CHARACTERS} of {len(value)} characters)"


class ActionForbidden(ActionProviderToolsException, Forbidden):
    pass


class AuthUnavailable(ActionProviderToolsException, ServiceUnavailable):
    """Globus Auth could not be asked; the caller should retry."""

    def get_headers(self, *args: object) -> list[tuple[str, str]]:
        return [*super().get_headers(*args), ("Retry-After", str(RETRY_AFTER_SECONDS))]


class BearerUnauthorized(UnauthorizedRequest):
    """401 with the challenge header RFC 6750 asks for."""

    @property
    def name(self) -> str:
        return "UnauthorizedRequest"

    def get_headers(self, *args: object) -> list[tuple[str, str]]:
        return [*super().get_headers(*args), ("WWW-Authenticate", "Bearer")]


def error_body(code: str, description: str | None) -> bytes:
    return json.dumps({"code": code, "description": description}).encode()


def error_response(
    status: int, code: str, description: str | None, headers: Iterable[tuple[str, str]] = ()
) -> Response:
    """The one way an error leaves the app."""
    response = Response(error_body(code, description), status=status, mimetype="application/json")
    response.headers.extend(headers)
    return response


def http_error_response(error: HTTPException) -> Response:
    """Any werkzeug or library HTTP error as JSON, with its own headers
    (``Allow``, ``WWW-Authenticate``, ``Retry-After``) but its Content-Type."""
    status = error.code or 500
    if isinstance(error, ActionProviderToolsException):
        code, description = error.name, error.description
    else:
        code = _CODES.get(status, type(error).__name__)
        description = _DESCRIPTIONS.get(status, error.description)
    headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
    return error_response(status, code, description, headers)


_full_warned_at = [-math.inf]  # monotonic time of the last "store full" warning


def _warn_full(capacity: int) -> None:
    """WARNING that the memory store is full, at most once a minute (every
    refused run is also in the request log, as a 503)."""
    now = time.monotonic()
    if now - _full_warned_at[0] >= 60:
        _full_warned_at[0] = now
        log.warning(
            "the memory store is full (MEMORY_STORE_CAPACITY=%d actions): new runs are "
            "answered 503 until actions are released or expire", capacity,
        )


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, http_error_response)

    @app.errorhandler(store.StoreUnavailable)
    def store_unavailable(error: store.StoreUnavailable) -> Response:
        log.error("action store unavailable: %s", error)
        return error_response(
            503, "StoreUnavailable", "The action store is unavailable; try again shortly.",
            [("Retry-After", str(RETRY_AFTER_SECONDS))],
        )

    @app.errorhandler(store.LiveActionLimitReached)
    def live_action_limit(error: store.LiveActionLimitReached) -> Response:
        current_app.extensions["metrics"].rate_limited("live_actions")
        return error_response(
            429, "TooManyRequests",
            f"You have {error.limit} live actions, the most this provider keeps for one "
            "identity: release completed actions to make room (or wait for their "
            f"release_after), then try again in {ROOM_RETRY_AFTER_SECONDS} s.",
            [("Retry-After", str(ROOM_RETRY_AFTER_SECONDS))],
        )

    @app.errorhandler(store.StoreFull)
    def provider_full(error: store.StoreFull) -> Response:
        _warn_full(error.capacity)
        return error_response(
            503, "ProviderFull",
            "The provider is full: it keeps no more actions until some are released; "
            f"try again in {ROOM_RETRY_AFTER_SECONDS} s.",
            [("Retry-After", str(ROOM_RETRY_AFTER_SECONDS))],
        )

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "ActionProviderError", "Internal Server Error")
