"""The HTTP surface: parse the request, call the rules, render JSON. Thin.

Token checking and run-request validation happen in before_request hooks
(``app.hooks``); by the time a view runs, ``g.auth_state`` is the caller's
library AuthState and, for /run, ``g.action_request`` the validated request.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, jsonify

from app.actions import ActionService
from app.errors import ActionForbidden

bp = Blueprint("provider", __name__)


def service() -> ActionService:
    return current_app.extensions["actions"]


@bp.get("/")
def introspect() -> Response:
    description = current_app.extensions["description"]
    if not g.auth_state.check_authorization(
        description.document["visible_to"], allow_all_authenticated_users=True
    ):
        raise ActionForbidden("This provider is not visible to you.")
    return description.response()


@bp.post("/run")
def run() -> tuple[Response, int]:
    description = current_app.extensions["description"]
    if not g.auth_state.check_authorization(
        description.document["runnable_by"], allow_all_authenticated_users=True
    ):
        raise ActionForbidden("You may not run actions on this provider.")
    status, created = service().run(g.action_request, g.auth_state)
    return jsonify(status), 202 if created else 200


@bp.get("/<action_id>/status")
def status(action_id: str) -> Response:
    return jsonify(service().status(action_id, g.auth_state))


@bp.post("/<action_id>/cancel")
def cancel(action_id: str) -> Response:
    return jsonify(service().cancel(action_id, g.auth_state))


@bp.post("/<action_id>/release")
def release(action_id: str) -> Response:
    return jsonify(service().release(action_id, g.auth_state))
