"""The real service plus routes that show what the app sees of a request
(``request.remote_addr``, ``request.scheme``; the FLASK_* names in its WSGI
environ), for e2e tests: python -m app --app 'tests.proxy_probe:create_app()'."""

from __future__ import annotations

from flask import Flask, jsonify, request

from app import create_app as create_service


def create_app() -> Flask:
    app = create_service()

    @app.get("/probe/request")
    def probe():  # type: ignore[no-untyped-def]
        return jsonify(remote_addr=request.remote_addr, scheme=request.scheme)

    @app.get("/probe/environ")
    def environ():  # type: ignore[no-untyped-def]
        return jsonify(sorted(k for k in request.environ if k.startswith("FLASK_")))

    return app
