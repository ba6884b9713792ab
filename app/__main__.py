"""``python -m app``: serve the provider with granian, in development and in
production alike.

    python -m app --dev                      # try it: dev tokens, loopback only
    python -m app --store postgresql://user@db/actions --host 10.0.0.5

Options (each with the environment variable read when it is not given):

    --host, --port   BIND=host:port   127.0.0.1:8000 (behind a proxy on this host)
    --workers        WEB_CONCURRENCY  worker processes: 1 with the memory store (its
                                      actions live in that process: more are refused),
                                      one per CPU core with SQLite or PostgreSQL
    --threads        THREADS          request threads in each worker (2)
    --drain-seconds  DRAIN_SECONDS    after SIGTERM, keep serving this long with /healthz
                                      answering 503, then stop (5)
    --store          FLASK_STORE_URL  memory://, sqlite:///path, postgresql://...
    --dev                             FLASK_AUTH_MODE=dev

The settings, the credentials, the store and the number of workers are
checked here, before any worker starts: one line and exit status 2 if wrong.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from granian import Granian
from granian.constants import Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels

from app.logs import server_log_config
from app.serving import DRAIN_FILE_VARIABLE, load_app
from app.startup import EXIT_BAD_SETUP, SQL_WORKERS, check_or_exit, default_workers

DEFAULT_BIND = ("127.0.0.1", 8000)
# Two: room for one slow request (a Globus call waiting) beside quick ones. Each
# thread more only adds contention for the one interpreter lock: more CPU time
# per request and a longer tail (bench/README.md#threads).
DEFAULT_THREADS = 2
# Load balancers (a Kubernetes endpoint list, a health-checking proxy) take a few
# seconds to see a 503 from /healthz and stop sending requests (Kubernetes users
# add a few seconds' preStop sleep for the same reason). Short, as a stop waits.
DEFAULT_DRAIN_SECONDS = 5.0
# Requests still running this long after the drain are ended with their worker.
# The slowest honest request waits on three Globus calls (introspection,
# dependent tokens, groups) of AUTH_TIMEOUT_SECONDS (5 s) each.
KILL_AFTER_SECONDS = 15
# A request's headers must arrive within this, and an idle keep-alive connection
# is closed after it: each worker holds at most 1024/workers connections at once
# (granian's backpressure), idle ones included. granian's own default; longer
# than the pauses of clients that poll a status (ap-client waits at most 10 s),
# which would otherwise race the close. A proxy's upstream keep-alive must be
# shorter (deploy/nginx.conf).
HEADER_READ_TIMEOUT_SECONDS = 30
# Request line and headers, all together; more is a 431 (with an empty body).
HEADER_BUFFER_BYTES = 64 * 1024

log = logging.getLogger("app.server")


@dataclass(frozen=True)
class Options:
    host: str
    port: int
    workers: int | None  # None: as the store wants
    workers_from: str  # how it was asked for, to name it in a refusal
    threads: int
    drain_seconds: float
    app: str


def parse_args(argv: list[str] | None, environ: Mapping[str, str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m app", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dev", action="store_true",
                        help="dev mode: accept 'dev-token-<name>' tokens, no Globus "
                        "credentials needed, loopback clients only")
    parser.add_argument("--host", help="address to bind (default: BIND, else 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: BIND, else 8000)")
    parser.add_argument("--store", help="FLASK_STORE_URL: memory://, sqlite:///path, "
                        "postgresql://...")
    parser.add_argument("--workers", type=int, help="worker processes (default: "
                        "WEB_CONCURRENCY, else 1 on the memory store, one per CPU core "
                        f"({SQL_WORKERS}) on SQL)")
    parser.add_argument("--threads", type=int, help="request threads a worker "
                        f"(default: THREADS, else {DEFAULT_THREADS})")
    parser.add_argument("--drain-seconds", type=float, help="serve this long after SIGTERM, "
                        f"/healthz 503 (default: DRAIN_SECONDS, else {DEFAULT_DRAIN_SECONDS:g})")
    parser.add_argument("--app", default="app:create_app()", help=argparse.SUPPRESS)  # tests
    args = parser.parse_args(argv)
    if args.dev:
        os.environ["FLASK_AUTH_MODE"] = "dev"
    if args.store:
        os.environ["FLASK_STORE_URL"] = args.store

    host, port = _bind(environ.get("BIND"))
    if args.workers is not None:
        workers, workers_from = args.workers, f"--workers {args.workers}"
    elif environ.get("WEB_CONCURRENCY"):
        workers = _number("WEB_CONCURRENCY", environ["WEB_CONCURRENCY"], int)
        workers_from = f"WEB_CONCURRENCY={workers}"
    else:
        workers, workers_from = None, ""
    threads = args.threads if args.threads is not None else (
        _number("THREADS", environ["THREADS"], int) if environ.get("THREADS")
        else DEFAULT_THREADS)
    drain = args.drain_seconds if args.drain_seconds is not None else (
        _number("DRAIN_SECONDS", environ["DRAIN_SECONDS"], float)
        if environ.get("DRAIN_SECONDS") else DEFAULT_DRAIN_SECONDS)
    for name, value, least in (("--workers/WEB_CONCURRENCY", workers, 1),
                               ("--threads/THREADS", threads, 1),
                               ("--drain-seconds/DRAIN_SECONDS", drain, 0)):
        if value is not None and value < least:
            refuse(f"{name} must be at least {least}, not {value:g}")
    return Options(
        host=args.host or host, port=args.port if args.port is not None else port,
        workers=workers, workers_from=workers_from, threads=threads, drain_seconds=drain,
        app=args.app,
    )


def refuse(line: str) -> NoReturn:
    print(f"whattimeisitrightnow: {line}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_BAD_SETUP)


def _number(name: str, text: str, kind: Callable[[str], Any]) -> Any:
    try:
        return kind(text)
    except ValueError:
        refuse(f"bad setting {name}={text!r}: expected "
               f"{'a whole number' if kind is int else 'a number'}")


def _bind(text: str | None) -> tuple[str, int]:
    """BIND's host and port: 0.0.0.0:8000, [::1]:8000."""
    if not text:
        return DEFAULT_BIND
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        refuse(f"bad setting BIND={text!r}: expected host:port, e.g. 127.0.0.1:8000")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv, os.environ)
    config = check_or_exit(options.workers, options.workers_from)
    if config["AUTH_MODE"] == "dev" and not _is_loopback(options.host):
        refuse(f"dev mode serves loopback clients only; not binding {options.host}")
    workers = options.workers or default_workers(config)
    if config["AUTH_MODE"] == "dev":
        _print_dev_banner(options.host, options.port)

    run_dir = Path(tempfile.mkdtemp(prefix="whattimeisitrightnow-"))
    try:
        _metrics_dir(run_dir)
        drain_file = run_dir / "draining"
        os.environ[DRAIN_FILE_VARIABLE] = str(drain_file)
        server = Granian(
            options.app,
            address=options.host,
            port=options.port,
            interface=Interfaces.WSGI,
            websockets=False,
            workers=workers,
            blocking_threads=options.threads,
            http1_settings=HTTP1Settings(
                header_read_timeout=HEADER_READ_TIMEOUT_SECONDS * 1000,
                keep_alive=True,
                max_buffer_size=HEADER_BUFFER_BYTES,
            ),
            log_level=LogLevels(str(config["LOG_LEVEL"]).lower()),
            log_dictconfig=server_log_config(config),
            log_access=False,  # the app logs every request (app.observability)
            # A crashed worker is started again (the memory store's actions are
            # gone with it either way); workers are never recycled otherwise.
            respawn_failed_workers=True,
            workers_kill_timeout=KILL_AFTER_SECONDS,
        )
        server.on_startup(drain_on_sigterm(options.drain_seconds, drain_file))
        server.serve(target_loader=load_app)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0


def _metrics_dir(run_dir: Path) -> None:
    """Prometheus multiprocess mode: every worker writes its values in one
    directory and /metrics adds them up. PROMETHEUS_MULTIPROC_DIR if set (its
    files of an earlier run are removed: they would be added in), else one in
    ``run_dir``, removed at exit. Set before any worker imports prometheus_client."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    folder = Path(given) if given else run_dir / "metrics"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


def drain_on_sigterm(seconds: float, drain_file: Path) -> Callable[[], None]:
    """An on_startup hook: on SIGTERM, drain before stopping.

    granian stops accepting connections as soon as SIGTERM arrives. Its
    ``startup()`` installs that handler before it calls the on_startup hooks,
    so the hook can wrap it: on SIGTERM the drain file is created (every
    worker's /healthz answers 503 from then on, so a load balancer stops
    sending requests here) while everything is served as usual; ``seconds``
    later granian's handler runs: it stops accepting, lets requests in flight
    finish (KILL_AFTER_SECONDS at most) and exits 0. A second SIGTERM, or
    SIGINT (Ctrl-C), stops at once.
    """

    def install() -> None:
        stop: Callable[[int, FrameType | None], Any] = signal.getsignal(  # type: ignore[assignment]
            signal.SIGTERM)  # granian's, installed by startup()
        started: list[threading.Thread] = []

        def drain_then_stop(signum: int, frame: FrameType | None) -> None:
            drain_file.touch()
            log.info("SIGTERM: draining for %g s (/healthz answers 503), then stopping",
                     seconds)
            time.sleep(seconds)
            stop(signum, frame)

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            if started or seconds <= 0:
                stop(signum, frame)
                return
            # The wait runs in a thread: a signal handler should return at once.
            started.append(threading.Thread(target=drain_then_stop, args=(signum, frame),
                                            name="drain", daemon=True))
            started[0].start()

        signal.signal(signal.SIGTERM, on_sigterm)

    return install


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _print_dev_banner(host: str, port: int) -> None:
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    print(
        f"""
  *** DEV MODE — NOT FOR PRODUCTION ***
  Tokens 'dev-token-<name>' are accepted without Globus Auth; loopback clients only.
  Try:
    curl -s -H 'Authorization: Bearer dev-token-alice' {url}/
    curl -s -H 'Authorization: Bearer dev-token-alice' -H 'Content-Type: application/json' \\
         -d '{{"request_id": "demo-1", "body": {{"utc_offset": 5.5}}}}' {url}/run
""",
        file=sys.stderr,
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
