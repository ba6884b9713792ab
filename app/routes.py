"""The HTTP surface: parse the request, call the rules, render JSON. Thin.

Token checking, authorization (``allowed_by``: who may see the provider,
who may run) and run-request validation happen before, in the
before_request hook of ``app.hooks`` (whose docstring tells a request's whole
path); by the time a view runs, ``g.auth_state`` is the caller's library
AuthState (absent only on ``GET /`` when VISIBLE_TO lists "public") and, for
a view that ``takes_run_request``, ``g.action_request`` the validated
request.

Each operation answers on the original path and on the newer /actions path
the library's blueprint also serves; both rules share one endpoint, so the
hooks treat them alike.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, jsonify, request

from app.actions import ActionService
from app.hooks import allowed_by, takes_run_request
from app.paging import encode_marker, enumeration_marker, enumeration_query, log_query

bp = Blueprint("provider", __name__)


def service() -> ActionService:
    return current_app.extensions["actions"]


@bp.route("/", methods=["GET", "OPTIONS"])
@allowed_by("VISIBLE_TO", "This provider is not visible to you.")
def introspect() -> Response | tuple[Response, int]:
    if request.method == "OPTIONS":  # CORS preflight, as the library answers it
        response = Response(status=204)
        del response.headers["Content-Type"]
        response.headers["Access-Control-Allow-Methods"] = "GET, OPTIONS"
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Expose-Headers"] = "*"
        return response
    return current_app.extensions["description"].response()


@bp.post("/run")
@bp.post("/actions")
@allowed_by("RUNNABLE_BY", "You may not run actions on this provider.")
@takes_run_request
def run() -> tuple[Response, int]:
    status, created = service().run(g.action_request, g.auth_state)
    g.action_id = status["action_id"]  # for the request log line (app.observability)
    return jsonify(status), 202 if created else 200


@bp.get("/<action_id>/status")
@bp.get("/actions/<action_id>")
def status(action_id: str) -> Response:
    return jsonify(service().status(action_id, g.auth_state))


@bp.post("/<action_id>/cancel")
@bp.post("/actions/<action_id>/cancel")
def cancel(action_id: str) -> Response:
    return jsonify(service().cancel(action_id, g.auth_state))


@bp.post("/<action_id>/resume")
@bp.post("/actions/<action_id>/resume")
def resume(action_id: str) -> Response:
    return jsonify(service().resume(action_id, g.auth_state))


@bp.post("/<action_id>/release")
@bp.delete("/actions/<action_id>")
def release(action_id: str) -> Response:
    return jsonify(service().release(action_id, g.auth_state))


@bp.get("/actions")
def enumerate_actions() -> Response:
    query = enumeration_query(request.args)
    actions, after = service().enumerate(
        g.auth_state, query.roles, query.statuses, query.limit, query.after
    )
    return jsonify(
        actions=actions,
        limit=query.limit,
        has_next_page=after is not None,
        marker=None if after is None else enumeration_marker(*after),
    )


@bp.get("/<action_id>/log")
@bp.get("/actions/<action_id>/log")
def log(action_id: str) -> Response:
    query = log_query(request.args)
    entries = service().log(action_id, g.auth_state)
    end = query.offset + query.limit
    more = end < len(entries)
    return jsonify(
        entries=entries[query.offset : end],
        limit=query.limit,
        has_next_page=more,
        marker=encode_marker(end) if more else None,
    )
