"""Start-up checks shared by ``python -m app`` and the gunicorn settings.

A bad setting, missing credentials, an unsafe setup or a store that cannot be
used stop the service with one line on stderr and exit status 2, before any
worker starts (a worker failing to boot would print a traceback instead).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

from app.auth import MissingCredentials, make_state_builder
from app.settings import ConfigError, load_settings
from app.store import StoreError, UnknownStoreURL, open_store

EXIT_BAD_SETUP = 2


class UnsafeSetup(ValueError):
    """A combination of settings that would misbehave without an error."""


STARTUP_ERRORS = (ConfigError, MissingCredentials, StoreError, UnknownStoreURL, UnsafeSetup)


def refuse_split_memory_store(config: dict[str, Any], workers: int) -> None:
    if workers > 1 and str(config["STORE_URL"]).lower().startswith("memory"):
        raise UnsafeSetup(
            f"{workers} worker processes with the memory store: each would keep its own "
            "actions, so a status would be found by one worker and not by the next. "
            "Serve one process (WEB_CONCURRENCY=1 or --workers 1; it has threads), or use "
            "a shared store: FLASK_STORE_URL=postgresql://... or sqlite:///..."
        )


def check(workers: int) -> dict[str, Any]:
    """The configuration, once it is known to serve with ``workers`` processes."""
    config = load_settings()
    make_state_builder(config)  # MissingCredentials, with what to set
    refuse_split_memory_store(config, workers)
    open_store(config["STORE_URL"], config).close()  # reachable, and its tables made
    return config


def check_or_exit(workers: int) -> dict[str, Any]:
    try:
        return check(workers)
    except STARTUP_ERRORS as error:
        print(f"whattimeisitrightnow: {error}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_BAD_SETUP) from None


def gunicorn_command_line_workers() -> int:
    """In a worker of ``gunicorn 'app:create_app()'`` started without our
    settings (no ``-c python:app.gunicorn_conf``, no ./gunicorn.conf.py), the
    workers its command line, GUNICORN_CMD_ARGS or WEB_CONCURRENCY ask for, as
    gunicorn's own parser reads them; 1 anywhere else. (With our settings,
    on_starting has already checked, in the master.)"""
    argv0 = Path(sys.argv[0] if sys.argv else "")
    if "gunicorn.arbiter" not in sys.modules or not (
        argv0.name == "gunicorn" or argv0.parts[-2:] == ("gunicorn", "__main__.py")
    ):
        return 1
    from gunicorn.config import Config

    config = Config()
    parser = config.parser()
    for args in (shlex.split(os.environ.get("GUNICORN_CMD_ARGS", "")), sys.argv[1:]):
        known, _ = parser.parse_known_args(args)
        if known.workers is not None:
            config.set("workers", known.workers)
    return int(config.workers)


def refuse_in_worker_or_exit(config: dict[str, Any]) -> None:
    """The worker-side twin of on_starting's check: one line, and gunicorn's
    worker-boot-error status, on which the master stops rather than respawns."""
    try:
        refuse_split_memory_store(config, gunicorn_command_line_workers())
    except UnsafeSetup as error:
        print(f"whattimeisitrightnow: {error}", file=sys.stderr, flush=True)
        raise SystemExit(3) from None  # gunicorn.arbiter.Arbiter.WORKER_BOOT_ERROR
