"""A gunicorn worker: the sync worker, with standby threads for slow requests.

    gunicorn --worker-class app.workers.StandbyThreadsWorker --threads 4 ...

(app/gunicorn_conf.py uses it by default.) Why, measured on this machine
(bench/gunicorn_defaults.py, figures in bench/README.md): gunicorn's sync
worker is the fastest (one thread reads, answers and closes each connection;
nothing is handed between threads), but one request waiting on Globus Auth
for an uncached token holds the whole process, and the memory store allows
only one process. gthread keeps the others going at a price paid on every
request: a main thread polls the sockets and hands each request to a pool
thread and back, and threads answering side by side take turns on the GIL
(~300 us more CPU a request here: 0.54-0.65 of sync's throughput with 4
threads).

Here thread 0 runs the sync worker's own loop (wait for a connection, accept,
answer, close) while threads 1..N-1 sleep. Thread k takes connections only
while threads 0..k-1 are all stuck, i.e. each has been answering one request
for longer than ``PATIENCE_SECONDS``, and stops once one of them is free
again. So all is answered by one thread while requests are quick (sync's
speed), and a request stuck on Globus Auth, a slow client or a slow database
costs the others at most ~2 x PATIENCE_SECONDS of waiting, while N-1 more can
get stuck before the process stops taking requests.

Like the sync worker it answers one request per connection (no keep-alive)
and wants a buffering proxy (nginx) in front: a slow client holds a thread.
The main thread tells the arbiter the worker is alive and, on shutdown, lets
each thread finish the request it is answering (up to graceful_timeout).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import threading
import time
from typing import Any

from gunicorn import http, sock, util
from gunicorn.workers.sync import SyncWorker

# A request quicker than this never wakes a standby thread. Standby threads
# look every PATIENCE_SECONDS (a few dozen wake-ups a second: nothing measurable).
PATIENCE_SECONDS = 0.02
_RETRY = (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK, errno.EINTR)


class Lane:
    """What one thread is doing: answering a request since when, or not."""

    def __init__(self) -> None:
        self._since: float | None = None

    def start(self) -> None:
        self._since = time.monotonic()

    def finish(self) -> None:
        self._since = None

    def stuck(self, now: float) -> bool:
        since = self._since
        return since is not None and now - since > PATIENCE_SECONDS


# Not named *SyncWorker: gunicorn turns any such class with --threads > 1
# into gthread (gunicorn/config.py, worker_class_str).
class StandbyThreadsWorker(SyncWorker):
    """SyncWorker's loop in thread 0, with ``cfg.threads - 1`` standby threads."""

    def run(self) -> None:
        for listener in self.sockets:
            listener.setblocking(False)
        lanes = [Lane() for _ in range(max(1, self.cfg.threads))]
        threads = [
            threading.Thread(target=self._serve, args=(lanes[k], lanes[:k]), daemon=True,
                             name=f"requests-{k}")
            for k in range(len(lanes))
        ]
        for thread in threads:
            thread.start()
        while self.alive and all(t.is_alive() for t in threads):
            self.notify()
            if not self.is_parent_alive():
                self.alive = False
                break
            if _readable([self.PIPE[0]], self._idle_seconds):  # a signal woke us
                with contextlib.suppress(OSError):
                    os.read(self.PIPE[0], 1)
        self.alive = False
        deadline = time.monotonic() + self.cfg.graceful_timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def _idle_seconds(self) -> float:
        """How long the main thread and thread 0 wait at a time when idle."""
        return min(self.timeout or 0.5, 0.5)

    def _serve(self, lane: Lane, ahead: list[Lane]) -> None:
        # Thread 0 waits for connections up to _idle_seconds at a time; a standby
        # thread only PATIENCE_SECONDS, so it notices soon when it is not needed.
        wait = PATIENCE_SECONDS if ahead else self._idle_seconds
        try:
            while self.alive:
                now = time.monotonic()
                if all(other.stuck(now) for other in ahead):
                    self._answer_one(lane, wait)
                else:
                    time.sleep(PATIENCE_SECONDS)
        except Exception:  # as the sync worker: log it, let the arbiter start another
            self.log.exception("request thread failed")
            self.alive = False

    def _answer_one(self, lane: Lane, wait: float) -> None:
        for listener in _readable(self.sockets, wait):
            try:
                client, addr = listener.accept()
            except OSError as error:
                if error.errno in _RETRY:  # another thread (or worker) took it
                    continue
                raise
            # Blocking, but a client silent for `timeout` seconds frees the thread
            # (the sync worker leaves that to the arbiter killing the process;
            # here the main thread keeps the process alive).
            client.settimeout(self.cfg.timeout)
            lane.start()
            try:
                self.handle(listener, client, addr)
            finally:
                lane.finish()
            return

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        """SyncWorker.handle, with a client that goes quiet (the timeout above)
        or away closed without a traceback in the log."""
        req = None
        try:
            if self.cfg.is_ssl:
                client = sock.ssl_wrap_socket(client, self.cfg)
            req = next(http.get_parser(self.cfg, client, addr))
            self.handle_request(listener, req, client, addr)
        except (http.errors.NoMoreData, StopIteration, TimeoutError, ConnectionError) as error:
            self.log.debug("Closing connection: %r", error)
        except OSError as error:
            if error.errno != errno.ENOTCONN:
                self.log.exception("Socket error processing request.")
        except BaseException as error:  # as SyncWorker: answer 500, go on
            self.handle_error(req, client, addr, error)
        finally:
            util.close_graceful(client)


def _readable(fds: list[Any], timeout: float) -> list[Any]:
    try:
        return select.select(fds, [], [], timeout)[0]
    except (OSError, ValueError):
        return []
