"""The service with BENCH_PREFILL actions already stored (latency flatness).

python -m app --app 'bench.prefilled:create_app()' with FLASK_* as for the service.
"""

from __future__ import annotations

import os

from flask import Flask

import app as service_app
from bench.fill import fill


def create_app() -> Flask:
    application = service_app.create_app()
    fill(application, int(os.environ.get("BENCH_PREFILL", "0")), tag="prefill")
    return application
