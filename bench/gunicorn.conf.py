"""gunicorn settings shared by every benchmarked app (service and bare Flask).

bench.run passes this file with ``-c`` to both, plus ``--bind`` and
``--workers``; nothing else differs. Sync workers: one request at a time per
process, no keep-alive (wrk reconnects for every request), as in the issue's
reference figures.
"""

worker_class = "sync"
loglevel = "warning"
accesslog = None
graceful_timeout = 2
timeout = 120  # the prefilled app stores 100,000 actions while it boots
control_socket_disable = True
