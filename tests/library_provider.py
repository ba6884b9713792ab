"""An Action Provider built only from the library's ActionProviderBlueprint and
its documented callbacks (run, status, cancel, release, resume, log,
enumerate), with an in-memory dict as the library's examples keep their
actions, and its authorization helpers. Auth is the library's own path
(FlaskAuthStateBuilder and Globus Auth token introspection).

``ap-client check`` runs against it in tests/test_check_library.py to show
what a provider made the library's way does differently from the spec and
what Globus Flows expects.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from globus_action_provider_tools import (
    ActionProviderDescription,
    ActionRequest,
    ActionStatus,
    ActionStatusValue,
    AuthState,
)
from globus_action_provider_tools.authorization import (
    authorize_action_access_or_404,
    authorize_action_management_or_404,
)
from globus_action_provider_tools.data_types import ActionLogEntry, ActionLogReturn
from globus_action_provider_tools.flask import ActionProviderBlueprint
from globus_action_provider_tools.flask.exceptions import ActionConflict, ActionNotFound
from globus_action_provider_tools.flask.helpers import assign_json_provider
from werkzeug.serving import make_server

INPUT_SCHEMA = {
    "type": "object",
    "required": ["echo_string"],
    "additionalProperties": False,
    "properties": {"echo_string": {"type": "string", "examples": ["hello", "world"]}},
}


def make_app(scope: str, client_id: str, client_secret: str, seconds: float = 1.0) -> Flask:
    description = ActionProviderDescription(
        globus_auth_scope=scope,
        title="Echo, the library's way",
        admin_contact="admin@example.org",
        synchronous=False,
        input_schema=INPUT_SCHEMA,
        log_supported=True,
        visible_to=["all_authenticated_users"],
    )
    blueprint = ActionProviderBlueprint(
        name="echo", import_name=__name__, url_prefix="", provider_description=description
    )
    actions: dict[str, ActionStatus] = {}
    requests: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    bodies: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def load(action_id: str) -> ActionStatus:
        action = actions.get(action_id)
        if action is None:
            raise ActionNotFound(f"No action with id {action_id}")
        if action.status == ActionStatusValue.ACTIVE:
            end = datetime.fromisoformat(action.details["estimated_completion_time"])
            if datetime.now(UTC) >= end:
                action.status = ActionStatusValue.SUCCEEDED
                action.display_status = "Done"
                action.completion_time = end
                action.details = bodies[action_id]
        return action

    def visible(action_id: str, auth: AuthState) -> ActionStatus:
        action = load(action_id)
        authorize_action_access_or_404(action, auth)
        return action

    def managed(action_id: str, auth: AuthState) -> ActionStatus:
        action = load(action_id)
        authorize_action_management_or_404(action, auth)
        return action

    @blueprint.action_run
    def run(request: ActionRequest, auth: AuthState) -> ActionStatus:
        with lock:
            key = (auth.effective_identity, request.request_id)
            if key in requests:
                action_id, body = requests[key]
                if body != request.body:
                    raise ActionConflict(f"request_id {request.request_id} was used before")
                return load(action_id)
            now = datetime.now(UTC)
            end = now + timedelta(seconds=seconds)
            action = ActionStatus(
                status=ActionStatusValue.ACTIVE,
                creator_id=auth.effective_identity,
                label=request.label,
                monitor_by=request.monitor_by or auth.identities,
                manage_by=request.manage_by or auth.identities,
                start_time=now.isoformat(),
                completion_time=None,
                release_after=request.release_after or "P30D",
                display_status="Running",
                details={"estimated_completion_time": end.isoformat()},
            )
            actions[action.action_id] = action
            requests[key] = (action.action_id, request.body)
            bodies[action.action_id] = request.body
            return action

    @blueprint.action_status
    def status(action_id: str, auth: AuthState) -> ActionStatus:
        with lock:
            return visible(action_id, auth)

    @blueprint.action_cancel
    def cancel(action_id: str, auth: AuthState) -> ActionStatus:
        with lock:
            action = managed(action_id, auth)
            if action.is_complete():
                raise ActionConflict(f"Action {action_id} has already completed")
            action.status = ActionStatusValue.FAILED
            action.display_status = "Cancelled"
            action.completion_time = datetime.now(UTC)
            action.details = {"cancelled": True}
            return action

    @blueprint.action_release
    def release(action_id: str, auth: AuthState) -> ActionStatus:
        with lock:
            action = managed(action_id, auth)
            if not action.is_complete():
                raise ActionConflict(f"Action {action_id} is still running")
            del actions[action_id]
            for key, (known, _body) in list(requests.items()):
                if known == action_id:
                    del requests[key]
            return action

    @blueprint.action_resume
    def resume(action_id: str, auth: AuthState) -> ActionStatus:
        with lock:
            action = managed(action_id, auth)
            if action.is_complete():
                raise ActionConflict(f"Action {action_id} has already completed")
            return action

    @blueprint.action_log
    def log(action_id: str, auth: AuthState) -> ActionLogReturn:
        with lock:
            action = visible(action_id, auth)
            entries = [ActionLogEntry(code="STARTED", description=f"started {action.start_time}")]
            return ActionLogReturn(limit=10, has_next_page=False, marker=None, entries=entries)

    @blueprint.action_enumerate
    def enumerate_actions(auth: AuthState, params: dict[str, Any]) -> list[ActionStatus]:
        with lock:
            return [
                action for action in (load(a) for a in list(actions))
                if action.creator_id == auth.effective_identity
                and action.status in params["statuses"]
            ]

    app = Flask(__name__)
    # As the library's example app does: the blueprint's own JSON provider is not
    # used by flask.jsonify, which would fail on the library's pydantic models.
    assign_json_provider(app)
    app.config.update(CLIENT_ID=client_id, CLIENT_SECRET=client_secret)
    app.register_blueprint(blueprint)
    return app


@contextmanager
def serve(app: Flask) -> Iterator[str]:
    """The app on a loopback port (werkzeug, threaded, in this process, so that
    ``responses`` fakes its calls to Globus Auth); its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
