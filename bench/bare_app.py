"""The ceiling: a bare Flask app with one route returning a small JSON document.

Served by bench.run the way the service is (python -m app --app bench.bare_app:app).
"""

from __future__ import annotations

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/")
def hello():  # type: ignore[no-untyped-def]
    return jsonify({"status": "ok", "service": "bare"})
