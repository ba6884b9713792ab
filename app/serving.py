"""What the launcher (``python -m app``) hands each granian worker: the app
loader, and the file that says the instance is draining.

Kept apart from app/__main__.py so that a worker imports it by name (and
light: no granian, no Flask) whatever way the worker process is started.
"""

from __future__ import annotations

import gc
import importlib
import os
from collections.abc import Callable
from typing import Any

from app.settings import ENV_PREFIX, SECRET_KEYS

# The launcher sets it to a file it creates when SIGTERM starts the drain.
DRAIN_FILE_VARIABLE = "WHATTIMEISITRIGHTNOW_DRAIN_FILE"


def draining() -> bool:
    """Has the launcher started draining this instance (/healthz: 503)?"""
    path = os.environ.get(DRAIN_FILE_VARIABLE)
    return bool(path) and os.path.exists(path)


def load_app(target: str) -> Callable[..., Any]:
    """The WSGI app named ``module:name`` (``module:factory()`` calls the
    factory), built in the worker.

    Then the settings that hold secrets (FLASK_CLIENT_SECRET, and
    FLASK_STORE_URL, which may carry a password) leave this worker's
    environment: the app has read them, and granian copies the environment
    into every request's WSGI environ, where no secret belongs."""
    module_name, _, name = target.partition(":")
    factory = name.endswith("()")
    app = getattr(importlib.import_module(module_name), name.removesuffix("()") or "app")
    if factory:
        app = app()
    for key in SECRET_KEYS:
        os.environ.pop(ENV_PREFIX + key, None)
    # Everything loaded so far (modules, the app, its caches' classes) lives as
    # long as the worker: keep it out of the cyclic collector's full passes,
    # which otherwise walk it all and stall every request meanwhile
    # (bench/README.md#gc-freeze).
    gc.collect()
    gc.freeze()
    return app  # type: ignore[no-any-return]
