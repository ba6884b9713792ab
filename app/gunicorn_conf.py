"""Production gunicorn settings, the one source of them:

    gunicorn -c python:app.gunicorn_conf 'app:create_app()'

(``python -m app``, the tests and the benchmarks load this module too; the
checkout's gunicorn.conf.py only points here.) Every setting can be
overridden on the command line (e.g. --workers 4) or by the environment
variables read below.

- Workers: app.workers.StandbyThreadsWorker, THREADS (4) threads each. The
  default memory:// store lives inside one process, so with it there is ONE
  worker, and more (WEB_CONCURRENCY, --workers) are refused at start; with a
  shared store (sqlite/postgresql) CPUs + 1.
  Workers are recycled every ~10,000 requests, except with the memory store.
- Start-up: the configuration, credentials and store are checked in the
  master (app.startup) before any worker starts: one line and exit 2 if bad.
- Proxy: X-Forwarded-For and X-Forwarded-Proto are believed only from the
  setting TRUSTED_PROXIES (default loopback only: a proxy on the same host).
- Metrics: Prometheus multiprocess mode. PROMETHEUS_MULTIPROC_DIR is used if
  set (and emptied at start), else a private temporary directory is made and
  removed at exit. Dead workers are marked so their live gauges go.
- Logs: JSON lines (app.logs.GunicornLogger): the error log on stderr, the
  access log on stdout (no query strings, no headers but the request id).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from app.settings import ConfigError, load_settings

# --- metrics: must be set before prometheus_client is first imported ----------
_owned_metrics_dir = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _owned_metrics_dir = tempfile.mkdtemp(prefix="whattimeisitrightnow-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _owned_metrics_dir
METRICS_DIR = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def _settings() -> dict[str, Any]:
    try:
        return load_settings()
    except ConfigError:  # on_starting reports the bad setting
        return {"STORE_URL": "memory://", "TRUSTED_PROXIES": []}


_SETTINGS = _settings()
MEMORY_STORE = str(_SETTINGS["STORE_URL"]).lower().startswith("memory")

# --- workers and threads: measured per store (bench/gunicorn_defaults.py; figures
# in bench/README.md) -----------------------------------------------------------------
# A request whose token is not in the introspection cache waits on Globus Auth
# (up to AUTH_TIMEOUT_SECONDS). What keeps the other requests going meanwhile is
# another thread in the same process: gunicorn's sync worker (one request at a
# time) is held by it, and the memory store allows only one process. gthread
# keeps them going but costs every request (a main thread hands each request to
# a pool thread; threads answering side by side take turns on the GIL): 0.54-0.65
# of sync's throughput with 4 threads on the memory store. app.workers'
# StandbyThreadsWorker is the sync worker's loop in one thread with THREADS - 1
# standby threads that take requests only while every thread ahead of them is
# stuck (> 20 ms on one request): 0.93-0.99 of sync, and while one request waited
# 3 s on Auth the others' p99 was ~5 ms (gthread 4 threads: ~8 ms; sync: 3 s).
# tests/test_slow_auth_e2e.py fails with THREADS=1 on every store.
# - memory:// (one process only: the store lives in it): 1 worker
#   (more are refused by on_starting);
# - sqlite/postgresql: CPUs + 1 workers: one more process than cores covers
#   the waits on the database (PostgreSQL, 2 cores: 3 workers 0.89-0.94 of the
#   best of five settings, 4 workers no faster).
# WEB_CONCURRENCY and THREADS override the numbers.
workers = int(os.environ.get("WEB_CONCURRENCY") or 0) or (
    1 if MEMORY_STORE else multiprocessing.cpu_count() + 1
)
worker_class = "app.workers.StandbyThreadsWorker"
threads = int(os.environ.get("THREADS", "4"))

# --- server ------------------------------------------------------------------------
bind = os.environ.get("BIND", "127.0.0.1:8000")  # put it behind an HTTPS proxy
timeout = 30  # a worker silent this long is killed (Auth calls are bounded far below)
graceful_timeout = 20  # SIGTERM: finish requests in flight for up to this long
# No keep-alive: like the sync worker, one request per connection (nginx in
# front keeps its clients' connections open).
# Recycle workers now and then (jitter: not all at once), but never the one
# worker of the memory store: its actions would go with it.
max_requests = 0 if MEMORY_STORE else 10_000
max_requests_jitter = 1_000
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190
control_socket_disable = True
# The proxies whose X-Forwarded-Proto is believed (the app: X-Forwarded-For too).
forwarded_allow_ips = ",".join(_SETTINGS["TRUSTED_PROXIES"])

# --- logs ---------------------------------------------------------------------------
logger_class = "app.logs.GunicornLogger"
errorlog = "-"
accesslog = "-"
loglevel = "info"


# --- hooks ----------------------------------------------------------------------------
def on_starting(server):  # type: ignore[no-untyped-def]
    """Refuse a bad configuration or an unsafe setup before forking (one line).
    Start from empty metrics: files of an earlier run would be added in.
    Answer requests gunicorn itself refuses (414, 431, 400) with JSON, as the
    app answers every error, not with gunicorn's HTML page (workers inherit it)."""
    import gunicorn.util

    from app.errors import write_gunicorn_error
    from app.startup import check_or_exit

    try:
        check_or_exit(server.cfg.workers)
    except SystemExit:
        on_exit(server)  # gunicorn does not call it when on_starting stops it
        raise
    gunicorn.util.write_error = write_gunicorn_error
    METRICS_DIR.mkdir(parents=True, exist_ok=True)
    for stale in METRICS_DIR.glob("*.db"):
        stale.unlink()


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):  # type: ignore[no-untyped-def]
    if _owned_metrics_dir:
        shutil.rmtree(_owned_metrics_dir, ignore_errors=True)
