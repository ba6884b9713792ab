"""Start-up checks shared by ``python -m app`` and the gunicorn settings.

A bad setting, missing credentials, an unsafe setup or a store that cannot be
used stop the service with one line on stderr and exit status 2, before any
worker starts (a worker failing to boot would print a traceback instead).
"""

from __future__ import annotations

import sys
from typing import Any

from app.auth import MissingCredentials, make_state_builder
from app.settings import ConfigError, load_settings
from app.store import StoreError, UnknownStoreURL, open_store

EXIT_BAD_SETUP = 2


class UnsafeSetup(ValueError):
    """A combination of settings that would misbehave without an error."""


STARTUP_ERRORS = (ConfigError, MissingCredentials, StoreError, UnknownStoreURL, UnsafeSetup)


def check(workers: int) -> dict[str, Any]:
    """The configuration, once it is known to serve with ``workers`` processes."""
    config = load_settings()
    make_state_builder(config)  # MissingCredentials, with what to set
    if workers > 1 and config["STORE_URL"].lower().startswith("memory"):
        raise UnsafeSetup(
            f"{workers} worker processes with the memory store: each would keep its own "
            "actions, so a status would be found by one worker and not by the next. "
            "Serve one process (WEB_CONCURRENCY=1 or --workers 1; it has threads), or use "
            "a shared store: FLASK_STORE_URL=postgresql://... or sqlite:///..."
        )
    open_store(config["STORE_URL"]).close()  # reachable, and its tables made
    return config


def check_or_exit(workers: int) -> dict[str, Any]:
    try:
        return check(workers)
    except STARTUP_ERRORS as error:
        print(f"whattimeisitrightnow: {error}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_BAD_SETUP) from None
