"""gunicorn settings of every benchmarked app (service and bare Flask alike).

Kept apart from production's app/gunicorn_conf.py on purpose: an A/B serves
older commits too (--baseline), so these settings import nothing of the
served code. bench.run passes this file with ``-c`` to both, plus ``--bind``
and ``--workers``; nothing else differs.

BENCH_CONF=bench (the default, S): sync workers, one request at a time per
process, no keep-alive (wrk reconnects for every request), as in the issue's
reference figures; no access log, metrics in process.
BENCH_CONF=prod (bench.run --conf prod, P): the same plus what production
adds: Prometheus multiprocess mode (a private temporary directory, removed at
exit) and JSON error and access logs through app.logs.GunicornLogger at INFO.
"""

import os
import shutil
import sys
import tempfile

worker_class = "sync"
loglevel = "warning"
accesslog = None
graceful_timeout = 2
timeout = 120  # the prefilled app stores 100,000 actions while it boots
control_socket_disable = True

if os.environ.get("BENCH_CONF") == "prod":
    if os.getcwd() not in sys.path:  # app.logs of the app being served (ours or the baseline's)
        sys.path.insert(0, os.getcwd())
    _metrics_dir = tempfile.mkdtemp(prefix="bench-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir
    logger_class = "app.logs.GunicornLogger"
    errorlog = "-"
    accesslog = "-"
    loglevel = "info"

    def child_exit(server, worker):  # type: ignore[no-untyped-def]
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

    def on_exit(server):  # type: ignore[no-untyped-def]
        shutil.rmtree(_metrics_dir, ignore_errors=True)
