"""A small connection pool for the SQL stores, shared by every thread of a
process: the number of connections is bounded by the pool, not by how many
threads the server has started over time.

The drivers' connections are opened in the thread that needs one (a refused
connection is an error at once, not a wait), and an idle one is checked
without a round trip (``Backend.alive``) before it is handed out again.
"""

from __future__ import annotations

import queue
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, Protocol

from app.store.base import StoreUnavailable

if TYPE_CHECKING:
    from app.store.sql import PoolSettings


class Backend(Protocol):
    """What the pool needs of a driver (app/store/sql.py has one per database)."""

    def connect(self) -> Any: ...

    def alive(self, conn: Any) -> bool:
        """Whether an idle connection can serve (no round trip)."""
        ...

    def reusable(self, conn: Any) -> bool:
        """Whether a connection coming back from a statement may be kept."""
        ...

    def close(self, conn: Any) -> None: ...


class ConnectionPool:
    """At most ``size`` connections in use at once, shared by every thread.

    A thread takes a permit (waiting at most the pool timeout), then the idle
    connection used last, or opens one when none is idle; it gives both back
    when done. A connection is opened only when every open one is busy, so a
    process whose requests never overlap keeps one.
    """

    def __init__(self, backend: Backend, settings: PoolSettings) -> None:
        self.backend, self.settings = backend, settings
        self._permits: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(settings.size):
            self._permits.put(None)
        self._idle: deque[Any] = deque()  # append and pop are thread-safe
        self._closed = False

    def take(self) -> Any:
        """A connection for this thread alone (give it back); driver errors
        from connecting propagate; StoreUnavailable when none is free in time."""
        try:
            self._permits.get(timeout=self.settings.timeout)
        except queue.Empty:
            raise StoreUnavailable(
                f"cannot use the action store: no free connection within "
                f"{self.settings.timeout:g} s (all {self.settings.size} in use; "
                "STORE_POOL_SIZE, STORE_POOL_TIMEOUT_SECONDS)"
            ) from None
        try:
            while True:
                try:
                    conn = self._idle.pop()
                except IndexError:
                    return self.backend.connect()
                if self.backend.alive(conn):
                    return conn
                self._discard(conn)
        except BaseException:
            self._permits.put(None)
            raise

    def give(self, conn: Any) -> None:
        if self.backend.reusable(conn):
            self._idle.append(conn)
        else:
            self._discard(conn)
        self._permits.put(None)
        if self._closed:  # closed while this one was out: close it too
            self.close()

    @contextmanager
    def connection(self) -> Iterator[Any]:
        conn = self.take()
        try:
            yield conn
        finally:
            self.give(conn)

    def close(self) -> None:
        """Close the idle connections now, the others when they come back."""
        self._closed = True
        while True:
            try:
                conn = self._idle.pop()
            except IndexError:
                return
            self._discard(conn)

    def _discard(self, conn: Any) -> None:
        with suppress(Exception):
            self.backend.close(conn)
