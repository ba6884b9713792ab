"""Start-up checks: a bad setting, missing credentials, an unsafe setup or a
store that cannot be used stop the service with one line on stderr and exit
status 2, before any worker starts (``python -m app`` runs them; a worker
failing to boot would print a traceback instead).

Under stock gunicorn there is no launcher of ours: each worker refuses the
memory store when gunicorn's command line asks for several workers.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

from app.auth import MissingCredentials, make_state_builder
from app.ratelimit import (
    RateLimitSetupError,
    check_storage_reachable,
    refuse_per_process_rate_limits,
)
from app.settings import ConfigError, load_settings
from app.store import StoreError, UnknownStoreURL, open_store

EXIT_BAD_SETUP = 2
SQL_WORKERS = len(os.sched_getaffinity(0))
GUNICORN_WORKER_BOOT_ERROR = 3  # a worker exiting with it makes gunicorn stop, not respawn


class UnsafeSetup(ValueError):
    """A combination of settings that would misbehave without an error."""


STARTUP_ERRORS = (
    ConfigError, MissingCredentials, StoreError, UnknownStoreURL, UnsafeSetup, RateLimitSetupError
)


def refuse_split_memory_store(config: dict[str, Any], workers: int, asked_by: str) -> None:
    """``asked_by``: how the workers were asked for (``--workers 2``), named in the line."""
    if workers > 1 and str(config["STORE_URL"]).lower().startswith("memory"):
        raise UnsafeSetup(
            f"{asked_by or workers}: {workers} worker processes with the memory store: each "
            "would keep its own actions, so a status would be found by one worker and not "
            "by the next. Serve one process (--workers 1; it has threads), or use a shared "
            "store: FLASK_STORE_URL=postgresql://... or sqlite:///..."
        )


def default_workers(config: dict[str, Any]) -> int:
    """Worker processes when none are asked for: one on the memory store (its
    actions live in that process), else one per CPU core (docs/deploying.md,
    "Workers", has the figures)."""
    if str(config["STORE_URL"]).lower().startswith("memory"):
        return 1
    return SQL_WORKERS


def check(workers: int | None, asked_by: str = "") -> dict[str, Any]:
    """The configuration, once it is known to serve with ``workers`` processes
    (None: ``default_workers``)."""
    config = load_settings()
    make_state_builder(config)  # MissingCredentials, with what to set
    if workers is None:
        workers = default_workers(config)
    refuse_split_memory_store(config, workers, asked_by)
    open_store(config["STORE_URL"], config).close()  # reachable, and its tables made
    refuse_per_process_rate_limits(config, workers)
    check_storage_reachable(config)  # rate limits: Redis answers (app.ratelimit)
    return config


def check_or_exit(workers: int | None, asked_by: str = "") -> dict[str, Any]:
    """``check``, for ``python -m app``: one line and exit status 2 if wrong."""
    try:
        return check(workers, asked_by)
    except STARTUP_ERRORS as error:
        hint = " (or run `python -m app --dev` to try the service locally)" if isinstance(
            error, MissingCredentials) else ""
        print(f"whattimeisitrightnow: {error}{hint}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_BAD_SETUP) from None


def gunicorn_workers() -> int:
    """In a worker of stock gunicorn, the workers its command line,
    GUNICORN_CMD_ARGS or WEB_CONCURRENCY ask for, read by gunicorn's own
    option parser (gunicorn.config, public); 1 anywhere else."""
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
    """Under stock gunicorn with several workers and the memory store: one
    line, and the status on which gunicorn stops rather than respawns."""
    try:
        workers = gunicorn_workers()
        refuse_split_memory_store(config, workers, f"gunicorn --workers {workers}")
        refuse_per_process_rate_limits(config, workers)
    except (UnsafeSetup, RateLimitSetupError) as error:
        print(f"whattimeisitrightnow: {error}", file=sys.stderr, flush=True)
        raise SystemExit(GUNICORN_WORKER_BOOT_ERROR) from None
