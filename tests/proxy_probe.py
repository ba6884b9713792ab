"""The real service plus one route that shows what the app sees of a request
(``request.remote_addr``, ``request.scheme``), for tests behind a proxy:
python -m app --app 'tests.proxy_probe:create_app()'."""

from __future__ import annotations

from flask import Flask, jsonify, request

from app import create_app as create_service


def create_app() -> Flask:
    app = create_service()

    @app.get("/probe/request")
    def probe():  # type: ignore[no-untyped-def]
        return jsonify(remote_addr=request.remote_addr, scheme=request.scheme)

    return app
