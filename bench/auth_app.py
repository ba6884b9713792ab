"""A reference: the library's per-request auth (FlaskAuthStateBuilder ->
AuthState, a warm introspection cache) before a fixed small JSON document.
The issue names it the ceiling for a provider that keeps the library's auth
path (~0.90 of the bare app). Dev tokens, as the service under bench.run.
No request log, no metrics, no request ids: only the auth.
"""

from __future__ import annotations

from flask import Flask, g, jsonify
from globus_action_provider_tools.errors import AuthenticationError

from app.auth import make_state_builder

CONFIG = {
    "AUTH_MODE": "dev",
    "SCOPE": "",
    "AUTH_TIMEOUT_SECONDS": 5.0,
    "INTROSPECT_CACHE_SIZE": 10_000,
    "INTROSPECT_CACHE_TTL_SECONDS": 30,
}

app = Flask(__name__)
builder = make_state_builder(CONFIG)


@app.before_request
def authenticate():  # type: ignore[no-untyped-def]
    try:
        g.auth_state = builder.build_from_request()
    except AuthenticationError:
        return jsonify({"error": "unauthorized"}), 401
    return None


@app.get("/")
def hello():  # type: ignore[no-untyped-def]
    return jsonify({"status": "ok", "service": "auth"})
