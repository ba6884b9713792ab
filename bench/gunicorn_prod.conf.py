"""bench/gunicorn.conf.py plus production's observability settings
(``bench.run --conf prod``), for the service and the bare app alike.

Same sync workers as the bench settings, and what gunicorn.conf.py adds in
production: Prometheus multiprocess mode (PROMETHEUS_MULTIPROC_DIR, a
private temporary directory, removed at exit), JSON error and access logs
through app.logs.GunicornLogger at INFO (one access line a request, on
stdout). The app's own request log line and metrics run under both settings;
this one adds the access log line and puts metrics in mmap files.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

exec((Path(__file__).resolve().parent / "gunicorn.conf.py").read_text())  # the bench settings

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
