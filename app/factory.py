"""Builds the Flask app (``create_app``): settings, the shared objects, then
the request path in its order (app.hooks' docstring tells each step)."""

from __future__ import annotations

import logging
import random
from typing import Any

from flask import Flask
from globus_action_provider_tools.flask.helpers import assign_json_provider

from app import routes
from app.actions import ActionRules, ActionService, Clock, utc_now
from app.auth import make_state_builder, provider_scope
from app.description import Description
from app.errors import register_error_handlers
from app.hooks import check_request, close_if_body_unread
from app.logs import configure_logging
from app.observability import Metrics
from app.observability import init_app as init_observability
from app.proxy import TrustedProxyFix
from app.ratelimit import init_app as init_rate_limits
from app.settings import load_settings
from app.startup import refuse_in_worker_or_exit
from app.store import open_store
from app.validation import RequestBounds, RunRequestValidator

log = logging.getLogger(__name__)


def create_app(
    overrides: dict[str, Any] | None = None,
    *,
    clock: Clock = utc_now,
    rng: random.Random | None = None,
) -> Flask:
    """Build the provider: config.py, the operator's file, FLASK_* environment,
    then ``overrides``, typed and checked (app.settings)."""
    app = Flask(__name__, static_folder=None)
    app.config.update(load_settings(overrides))
    refuse_in_worker_or_exit(app.config)  # gunicorn -w 3 without our settings
    app.config["DEBUG"] = False  # never the debugger, whatever the environment says
    assign_json_provider(app)  # the library's: its types (datetimes, durations) as JSON
    # Without this, "/actions//x" is an HTML 308 redirect to "/actions/x"; now
    # a 404 JSON. (The map is still empty: there is no static folder.)
    app.url_map = app.url_map_class(merge_slashes=False)
    configure_logging(app.config)
    metrics = Metrics()

    validator = RunRequestValidator(RequestBounds.from_config(app.config))
    store = open_store(app.config["STORE_URL"], app.config)
    app.extensions["auth_state_builder"] = make_state_builder(app.config, metrics)
    app.extensions["run_validator"] = validator
    app.extensions["store"] = store
    app.extensions["actions"] = ActionService(
        store, ActionRules.from_config(app.config), clock=clock, rng=rng, events=metrics
    )
    app.extensions["description"] = Description(
        provider_scope(app.config), validator.input_schema, app.config
    )
    if app.config["AUTH_MODE"] == "dev":
        log.warning(
            "DEV MODE: tokens 'dev-token-<name>' are accepted without Globus Auth; "
            "only loopback clients are served. Never use this in production."
        )

    init_rate_limits(app, metrics)  # the caller's request rates, for step 3f below
    # The request path, in order (app.hooks' docstring tells each step):
    # 1. the client's address from a trusted proxy: around the app, below;
    # 2. request id and timer: observability's before_request, registered
    #    first so that it runs first (and 7, its after_request: log line, metrics);
    init_observability(app, metrics)
    # 3. dev-mode guard, routing, token, authorization, run-request body,
    #    request rates: one before_request;
    app.before_request(check_request)
    app.after_request(close_if_body_unread)  # an unread body: the connection closes
    # 4-6. the views: the rules, the store, the JSON answer;
    app.register_blueprint(routes.bp)
    # an exception at any step answers as JSON {code, description}.
    register_error_handlers(app)
    app.wsgi_app = TrustedProxyFix(app.wsgi_app, app.config["TRUSTED_PROXIES"])  # type: ignore[method-assign]
    return app
