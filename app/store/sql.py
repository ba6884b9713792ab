"""SQLite and PostgreSQL stores, straight on their drivers (sqlite3, psycopg 3:
cheaper per statement than SQLAlchemy Core, measured in bench/README.md).

Every state change is one statement whose WHERE clause is the compare-and-set,
so it is atomic across threads, processes and hosts:

- create:  INSERT ... ON CONFLICT DO NOTHING on UNIQUE (creator_id, request_id)
           (an expired holder of the request_id is deleted first); with the
           live-action limit, INSERT ... SELECT ... WHERE the creator's live
           actions, counted on the index (creator_id, release_at_us) up to
           the limit, are fewer than it, after a per-creator lock (below);
- cancel:  UPDATE ... WHERE not cancelled AND not yet complete ... RETURNING;
- release: DELETE ... RETURNING;
- sweep:   DELETE of at most ``limit`` rows whose release_at has passed
           (PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent sweeps take
           different rows).

Times are stored as integer microseconds since the Unix epoch (UTC). That keeps
``release_at = cancelled_at + release_after`` one portable expression inside
the cancel UPDATE, compares exactly in SQLite (which has no timestamp type) and
PostgreSQL alike, and cannot be shifted by a session time zone. Records come
back with timezone-aware UTC datetimes.

Enumeration by principal uses a side table ``action_principals`` (principal,
start_time_us, action_id, roles): one B-tree row per principal of an action,
``roles`` a bit mask of creator_id / monitor_by / manage_by (usually the
creator holds all three: one row, not three). Its primary key is ordered the
way enumerate pages (start_time, action_id), so a page is an index range scan
per principal instead of a scan of all actions.

Connections: each store has a small pool (app/store/pool.py) of at most
STORE_POOL_SIZE connections, opened when a thread first needs one and shared
by every thread, so a server whose threads come and go holds no more than
that. A statement takes a connection for itself only. On PostgreSQL each hot
statement is one round trip in autocommit mode (create is one statement: a
CTE counting the creator's live actions and inserting the action and its
principal rows; with the limit, pipelined after the per-creator advisory lock
in the same round trip and implicit transaction), with a ``statement_timeout``
(STORE_STATEMENT_TIMEOUT_SECONDS); on SQLite writes run inside BEGIN
IMMEDIATE and the same setting bounds the wait for the write lock. There is
no pre-ping: an idle connection the server has closed is seen on its socket
(no round trip) and replaced; one that breaks during a statement is replaced
and the statement repeated when that is safe (reads, create, sweep). Anything
else, a statement timeout, or no free connection within
STORE_POOL_TIMEOUT_SECONDS, is StoreUnavailable (503, Retry-After).

Through PgBouncer in transaction mode the session's statement_timeout does
not follow the client from one server connection to the next: set it on the
role too (ALTER ROLE ... SET statement_timeout) or use PgBouncer's
query_timeout.

Prepared statements: psycopg prepares a statement on a connection from its
``PREPARE_THRESHOLD``-th use. Behind a pooler in transaction mode whose
version cannot track them (PgBouncer before 1.21, Debian 12 ships 1.18) put
``?prepared_statements=off`` in STORE_URL.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import sqlite3
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import ConnStatus, TransactionStatus

from app.store.base import ActionRecord, LiveActionLimitReached, StoreError, StoreUnavailable
from app.store.pool import ConnectionPool

SCHEMA_VERSION = 2

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_ROLE_BITS = {"creator_id": 1, "monitor_by": 2, "manage_by": 4}
_PG_LOCK_KEY = 0x7768_6174  # pg_advisory_xact_lock key serialising schema setup
# The key space of the per-creator locks of create (the two-int form of
# pg_advisory_xact_lock: apart from the one-bigint key above).
_PG_CREATOR_LOCKS = 0x6C69_7665
PREPARE_THRESHOLD = 2  # psycopg prepares a statement from its second use on a connection
CONNECT_TIMEOUT_SECONDS = 5  # unless STORE_URL says connect_timeout=
DRIVER_ERRORS = (psycopg.Error, sqlite3.Error)
_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class PoolSettings:
    """The STORE_* settings of a SQL store (config.py documents them; these
    defaults are config.py's)."""

    size: int = 8
    timeout: float = 5.0  # seconds a statement waits for a free connection
    statement_timeout: float = 10.0  # seconds

    @classmethod
    def from_config(cls, config: Any) -> PoolSettings:
        return cls(
            size=int(config["STORE_POOL_SIZE"]),
            timeout=float(config["STORE_POOL_TIMEOUT_SECONDS"]),
            statement_timeout=float(config["STORE_STATEMENT_TIMEOUT_SECONDS"]),
        )


class SchemaTooNew(StoreError):
    """The database was written by newer code than this."""


# --- schema ----------------------------------------------------------------------
# The columns of actions, in the order of every SELECT and INSERT below.
_COLUMNS = (
    "action_id", "creator_id", "request_id", "fingerprint", "start_time_us",
    "estimated_completion_time_us", "release_after_us", "result", "monitor_by",
    "manage_by", "label", "cancelled_at_us",
    # completion (cancelled_at or estimate) + release_after; kept right by cancel.
    "release_at_us",
)
_JSON_AT = (_COLUMNS.index("monitor_by"), _COLUMNS.index("manage_by"))
_START_AT = _COLUMNS.index("start_time_us")

# Counts a creator's live actions for the live-action limit (version 2).
_CREATOR_LIVE_INDEX = "CREATE INDEX actions_creator_live ON actions (creator_id, release_at_us)"
# "<bytes>" is the dialect's binary type.
_DDL = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE actions (
        action_id VARCHAR(64) NOT NULL PRIMARY KEY,
        creator_id TEXT NOT NULL,
        request_id TEXT NOT NULL,
        fingerprint <bytes> NOT NULL,
        start_time_us BIGINT NOT NULL,
        estimated_completion_time_us BIGINT NOT NULL,
        release_after_us BIGINT NOT NULL,
        result TEXT,
        monitor_by JSON NOT NULL,
        manage_by JSON NOT NULL,
        label TEXT,
        cancelled_at_us BIGINT,
        release_at_us BIGINT NOT NULL,
        CONSTRAINT actions_request_key UNIQUE (creator_id, request_id)
    )""",
    "CREATE INDEX actions_release_at ON actions (release_at_us)",
    _CREATOR_LIVE_INDEX,
    """CREATE TABLE action_principals (
        principal TEXT NOT NULL,
        start_time_us BIGINT NOT NULL,
        action_id VARCHAR(64) NOT NULL REFERENCES actions (action_id) ON DELETE CASCADE,
        roles SMALLINT NOT NULL,
        PRIMARY KEY (principal, start_time_us, action_id)
    )""",
    # For the cascade when an action is released or swept.
    "CREATE INDEX action_principals_action ON action_principals (action_id)",
)



def _add_creator_live_index(conn: Any) -> None:
    """Version 1 -> 2: the index counting a creator's live actions. It blocks
    writes while it is built (about a second a million actions), once, by the
    launcher before any worker serves."""
    if not isinstance(conn, sqlite3.Connection):
        conn.execute("SET LOCAL statement_timeout = 0")
    conn.execute(_CREATOR_LIVE_INDEX)


# Upgrades from version N to N + 1: functions of a connection, run in order
# inside the schema lock's transaction (with the connection's statement
# timeout: a long migration SETs LOCAL a longer one).
MIGRATIONS: dict[int, Callable[[Any], None]] = {1: _add_creator_live_index}

# --- statements ------------------------------------------------------------------
# Written with "@" for the driver's parameter mark and "<columns>" for the
# column list (only constants are pasted in, never values).
_STATEMENTS = {
    "get": "SELECT <columns> FROM actions WHERE action_id = @",
    "by_request": "SELECT <columns> FROM actions WHERE creator_id = @ AND request_id = @",
    "insert": "INSERT INTO actions (<columns>) VALUES (<marks>) ON CONFLICT DO NOTHING",
    "insert_principal": (
        "INSERT INTO action_principals (principal, start_time_us, action_id, roles) "
        "VALUES (@, @, @, @)"
    ),
    # A creator's live actions, counted up to a limit (an index range scan).
    "count_live": (
        "SELECT count(*) AS n FROM (SELECT 1 FROM actions "
        "WHERE creator_id = @ AND release_at_us > @ LIMIT @) AS l"
    ),
    # PostgreSQL: one statement for the action and its principal rows.
    "create_pg": (
        "WITH ins AS (<insert> RETURNING action_id, start_time_us), <principal_rows> "
        "SELECT count(*), NULL FROM ins"
    ),
    # The same unless the creator has the limit of live actions already: how
    # many it had (up to the limit), and whether the action was inserted.
    "create_pg_limited": (
        "WITH live AS (<count_live>), "
        "ins AS (INSERT INTO actions (<columns>) SELECT <marks> FROM live WHERE live.n < @ "
        "ON CONFLICT DO NOTHING RETURNING action_id, start_time_us), <principal_rows> "
        "SELECT (SELECT count(*) FROM ins), (SELECT n FROM live)"
    ),
    # Taken in the same transaction before create_pg_limited, so that its
    # count sees every create of the creator that went before.
    "lock_creator": "SELECT pg_advisory_xact_lock(@, hashtext(@))",
    "delete_expired": "DELETE FROM actions WHERE action_id = @ AND release_at_us <= @",
    "cancel": (
        "UPDATE actions SET cancelled_at_us = @, release_at_us = @ + release_after_us "
        "WHERE action_id = @ AND cancelled_at_us IS NULL "
        "AND estimated_completion_time_us > @ RETURNING <columns>"
    ),
    "release": "DELETE FROM actions WHERE action_id = @",
    "sweep": (
        "DELETE FROM actions WHERE action_id IN (SELECT action_id FROM actions "
        "WHERE release_at_us <= @ ORDER BY release_at_us LIMIT @<lock>) "
        "AND release_at_us <= @"
    ),
    # Pages of the actions of some principals; <statuses> from _STATUS_SQL.
    "enumerate": (
        "SELECT <columns> FROM actions WHERE action_id IN (SELECT action_id "
        "FROM action_principals WHERE principal IN (<principals>) AND (roles & @) <> 0<after>) "
        "AND release_at_us > @ AND (<statuses>) ORDER BY start_time_us, action_id LIMIT @"
    ),
    "count": "SELECT count(*) FROM actions",
    "version": "SELECT version FROM schema_version",
    "set_version": "UPDATE schema_version SET version = @",
    "first_version": "INSERT INTO schema_version (version) VALUES (@)",
}
_PRINCIPAL_ROWS = (
    "p AS (INSERT INTO action_principals (principal, start_time_us, action_id, roles) "
    "SELECT u.principal, ins.start_time_us, ins.action_id, u.roles FROM ins, "
    "unnest(@::text[], @::smallint[]) AS u(principal, roles))"
)
# PostgreSQL types of the columns: INSERT ... SELECT does not type its
# parameters from the columns as INSERT ... VALUES does.
_PG_TYPES = {
    "fingerprint": "bytea", "result": "text", "monitor_by": "json", "manage_by": "json",
    "label": "text", "action_id": "text", "creator_id": "text", "request_id": "text",
}
# ``effective_status(record, now) in statuses`` (see base.py), one "@" = now each.
_STATUS_SQL = {
    "ACTIVE": "(cancelled_at_us IS NULL AND estimated_completion_time_us > @)",
    "SUCCEEDED": (
        "(cancelled_at_us IS NULL AND estimated_completion_time_us <= @ "
        "AND result IS NOT NULL)"
    ),
    "FAILED": (
        "(cancelled_at_us IS NOT NULL OR (estimated_completion_time_us <= @ AND result IS NULL))"
    ),
}


def _sql(text: str, *, pg: bool) -> str:
    """A statement of _STATEMENTS (or like them) for the driver."""
    types = {name: _PG_TYPES.get(name, "bigint") for name in _COLUMNS} if pg else {}
    marks = ", ".join(f"@::{types[name]}" if pg else "@" for name in _COLUMNS)
    text = text.replace("<insert>", _STATEMENTS["insert"]).replace("<marks>", marks)
    text = text.replace("<count_live>", _STATEMENTS["count_live"])
    text = text.replace("<principal_rows>", _PRINCIPAL_ROWS)
    text = text.replace("<columns>", ", ".join(_COLUMNS))
    text = text.replace("<lock>", " FOR UPDATE SKIP LOCKED" if pg else "")
    return text.replace("@", "%s" if pg else "?")


# --- the two backends ------------------------------------------------------------
class _Postgres:
    """psycopg 3 in autocommit mode; the pool holds each connection's one cursor
    (cheaper than a new cursor per statement)."""

    pg = True
    errors: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg.InterfaceError)
    bytes_type = "BYTEA"

    def __init__(self, url: str, settings: PoolSettings) -> None:
        self.conninfo, prepared = libpq_conninfo(url)
        self.prepare_threshold = PREPARE_THRESHOLD if prepared else None
        given = conninfo_to_dict(self.conninfo)
        self.connect_timeout = {} if "connect_timeout" in given else {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS
        }
        self.statement_timeout_ms = max(1, round(settings.statement_timeout * 1000))

    def connect(self) -> Any:
        conn = psycopg.connect(
            self.conninfo, autocommit=True, prepare_threshold=self.prepare_threshold,
            **self.connect_timeout,
        )
        # A session setting (not libpq's options=, which PgBouncer refuses).
        conn.execute(f"SET statement_timeout = {self.statement_timeout_ms}")
        return conn.cursor()

    @staticmethod
    def alive(cursor: Any) -> bool:
        """Whether an idle connection can serve: open, not in a transaction,
        and nothing to read on its socket (else the server's goodbye: a
        restart, an idle timeout). Asks the socket, not the server: no round
        trip."""
        pgconn = cursor.connection.pgconn
        if pgconn.status != ConnStatus.OK or pgconn.transaction_status != TransactionStatus.IDLE:
            return False
        try:
            return not select.select([pgconn.socket], [], [], 0)[0]
        except (OSError, ValueError, psycopg.Error):
            return False

    @staticmethod
    def reusable(cursor: Any) -> bool:
        """Whether a connection coming back from a statement may be kept."""
        pgconn = cursor.connection.pgconn
        idle = pgconn.transaction_status == TransactionStatus.IDLE
        return idle and pgconn.status == ConnStatus.OK

    @staticmethod
    def broken(cursor: Any) -> bool:
        return bool(cursor.connection.broken or cursor.connection.closed)

    @staticmethod
    def close(cursor: Any) -> None:
        cursor.connection.close()

    @staticmethod
    def write(cursor: Any, sql: str, params: Sequence[Any]) -> Any:
        """One write statement: autocommit, one round trip."""
        return cursor.execute(sql, params)

    @staticmethod
    def has_tables(cursor: Any) -> bool:
        return cursor.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[0]

    @staticmethod
    def lock_schema(cursor: Any) -> None:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))

    @staticmethod
    def decode(row: Sequence[Any]) -> dict[str, Any]:
        return dict(zip(_COLUMNS, row, strict=True))  # psycopg decodes json columns


class _SQLite:
    """sqlite3 in autocommit mode; writers say BEGIN IMMEDIATE themselves, so
    two processes never deadlock upgrading a read lock; readers stay
    deferred and, under WAL, never wait for writers."""

    pg = False
    errors: tuple[type[Exception], ...] = (sqlite3.OperationalError, sqlite3.InterfaceError)
    bytes_type = "BLOB"

    def __init__(self, url: str, settings: PoolSettings) -> None:
        self.path = sqlite_path(url)
        self.busy_timeout = settings.statement_timeout  # the wait for the write lock

    def connect(self) -> Any:
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # an acknowledged write is on disk
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @staticmethod
    def alive(conn: Any) -> bool:
        return not conn.in_transaction

    reusable = alive

    @staticmethod
    def broken(conn: Any) -> bool:
        return False  # a file does not hang up

    @staticmethod
    def close(conn: Any) -> None:
        conn.close()

    @staticmethod
    def write(conn: Any, sql: str, params: Sequence[Any]) -> _Fetched:
        """One write statement inside BEGIN IMMEDIATE (a deferred write could
        fail at once with SQLITE_BUSY instead of waiting for the lock)."""
        with _transaction(conn, "BEGIN IMMEDIATE"):
            cursor = conn.execute(sql, params)
            return _Fetched(cursor.fetchall(), cursor.rowcount)

    @staticmethod
    def has_tables(conn: Any) -> bool:
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        )
        return found.fetchone() is not None

    @staticmethod
    def lock_schema(conn: Any) -> None:
        pass  # BEGIN IMMEDIATE already holds the write lock

    @staticmethod
    def decode(row: Sequence[Any]) -> dict[str, Any]:
        mapping = dict(zip(_COLUMNS, row, strict=True))
        for name in ("monitor_by", "manage_by"):  # SQLite keeps JSON as text
            mapping[name] = json.loads(mapping[name])
        return mapping


class _Fetched:
    """What a SQLite write returns, read before its COMMIT (the cursor's
    rows do not survive it)."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows, self.rowcount = rows, rowcount

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None


@contextmanager
def _transaction(conn: Any, begin: str) -> Iterator[None]:
    conn.execute(begin)
    try:
        yield
    except BaseException:
        with suppress(*DRIVER_ERRORS):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# --- the store ---------------------------------------------------------------------
class SQLStore:
    """An ActionStore in SQLite or PostgreSQL (see the module docstring)."""

    def __init__(self, url: str, settings: PoolSettings | None = None) -> None:
        self.settings = settings or PoolSettings()
        if self.settings.size < 1 or self.settings.timeout <= 0:
            raise ValueError("the pool needs a size of at least 1 and a timeout above 0")
        scheme = url.split(":", 1)[0].lower()
        self.backend: _Postgres | _SQLite = (
            _SQLite(url, self.settings) if scheme == "sqlite" else _Postgres(url, self.settings)
        )
        self.dialect = "postgresql" if self.backend.pg else "sqlite"
        self._statements = {
            name: _sql(text, pg=self.backend.pg) for name, text in _STATEMENTS.items()
        }
        self._pool = ConnectionPool(self.backend, self.settings)
        self._migrate()
        # Whatever forks this process next (granian's workers, gunicorn
        # --preload, multiprocessing) must not share connections with it.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forget_in_child(ref))

    def _migrate(self) -> None:
        """Create the tables if missing, or upgrade them, under a lock so that
        several workers starting together do it once."""
        q = self._statements
        begin = "BEGIN" if self.backend.pg else "BEGIN IMMEDIATE"
        try:
            with self._pool.connection() as conn, _transaction(conn, begin):
                self.backend.lock_schema(conn)
                if not self.backend.has_tables(conn):
                    for statement in _DDL:
                        conn.execute(statement.replace("<bytes>", self.backend.bytes_type))
                    conn.execute(q["first_version"], (SCHEMA_VERSION,))
                    return
                version = conn.execute(q["version"]).fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise SchemaTooNew(
                        f"the store's schema is version {version}; this code knows up to "
                        f"{SCHEMA_VERSION}: upgrade the code"
                    )
                while version < SCHEMA_VERSION:
                    MIGRATIONS[version](conn)
                    version += 1
                    conn.execute(q["set_version"], (version,))
        except self.backend.errors as error:
            raise _store_unavailable(error) from error

    def _run(self, work: Callable[[Any], _T], *, retry: bool) -> _T:
        """``work(connection)`` on a pooled connection (PostgreSQL: its cursor).

        A connection that breaks is dropped; ``work`` is then run once more
        if ``retry`` (it is safe to repeat: a read, or a write whose second
        run cannot differ from the first), else StoreUnavailable (a 503).
        """
        for attempt in (1, 2):
            try:
                conn = self._pool.take()
                try:
                    return work(conn)
                except self.backend.errors:
                    if retry and attempt == 1 and self.backend.broken(conn):
                        continue
                    raise
                finally:
                    self._pool.give(conn)
            except self.backend.errors as error:
                raise _store_unavailable(error) from error
            except DRIVER_ERRORS as error:
                raise _store_refused(error) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # --- the ActionStore protocol --------------------------------------------
    def create(
        self, record: ActionRecord, now: datetime, live_limit: int | None = None
    ) -> tuple[ActionRecord, bool]:
        now_us = to_us(now)
        row = _row(record)
        values = [row[name] for name in _COLUMNS]
        for at in _JSON_AT:
            values[at] = json.dumps(values[at])
        principals = _principal_rows(record)
        key = (record.creator_id, record.request_id)
        limit = None if live_limit is None else (live_limit, now_us)
        q = self._statements
        for _ in range(8):
            # Safe to repeat: a second run finds the first one's action by its
            # request_id and returns it (the caller then answers as for a retry).
            inserted, live = self._run(
                lambda conn: self._insert_action(conn, values, principals, limit), retry=True
            )
            if inserted:
                return _record(row), True
            existing = self._run(
                lambda conn: conn.execute(q["by_request"], key).fetchone(), retry=True
            )
            if existing is None:
                if live_limit is not None and live >= live_limit:
                    raise LiveActionLimitReached(live_limit)
                continue  # released since our INSERT: try again
            stored = _record(self.backend.decode(existing))
            if to_us(stored.release_at) > now_us:
                return stored, False
            # An expired action still holds the request_id: it counts as gone.
            expired = (stored.action_id, now_us)
            self._run(
                lambda conn, expired=expired: self.backend.write(
                    conn, q["delete_expired"], expired
                ),
                retry=True,
            )
        raise RuntimeError("request_id kept changing hands; giving up")  # pragma: no cover

    def _insert_action(
        self,
        conn: Any,
        values: list[Any],
        principals: list[tuple[str, int]],
        limit: tuple[int, int] | None,
    ) -> tuple[bool, int]:
        """Insert the action and its principal rows unless the request_id (or
        action_id) is taken or, with ``limit`` (live_limit, now), its creator
        has that many live actions; (inserted, live actions counted up to the
        limit: 0 without one).

        The count and the insert are atomic for each creator. PostgreSQL: one
        round trip, pipelining two statements in one implicit transaction: a
        per-creator advisory lock (held until that transaction ends), then the
        count and insert in one statement, whose snapshot, taken once the lock
        is held, sees the creator's every earlier create. (In one statement
        the count would be from before the wait, and concurrent creates of
        one creator could each see room for one more.) SQLite: one BEGIN
        IMMEDIATE transaction, which holds the database's write lock."""
        q = self._statements
        creator, start, action_id = values[1], values[_START_AT], values[0]
        if self.backend.pg:
            names = [principal for principal, _ in principals]
            roles = [mask for _, mask in principals]
            if limit is None:
                found = conn.execute(q["create_pg"], [*values, names, roles]).fetchone()
            else:
                live_limit, now_us = limit
                with conn.connection.pipeline():
                    conn.execute(q["lock_creator"], (_PG_CREATOR_LOCKS, creator))
                    conn.execute(
                        q["create_pg_limited"],
                        [creator, now_us, live_limit, *values, live_limit, names, roles],
                    )
                found = conn.fetchone()
            return bool(found[0]), int(found[1] or 0)
        with _transaction(conn, "BEGIN IMMEDIATE"):
            live = 0
            if limit is not None:
                live_limit, now_us = limit
                live = conn.execute(q["count_live"], (creator, now_us, live_limit)).fetchone()[0]
                if live >= live_limit:
                    return False, live
            inserted = conn.execute(q["insert"], values).rowcount == 1
            if inserted:
                conn.executemany(
                    q["insert_principal"],
                    [(name, start, action_id, mask) for name, mask in principals],
                )
        return inserted, live

    def find_request(self, creator_id: str, request_id: str, now: datetime) -> ActionRecord | None:
        if not _storable(request_id):
            return None
        sql = self._statements["by_request"]
        row = self._run(
            lambda conn: conn.execute(sql, (creator_id, request_id)).fetchone(), retry=True
        )
        record = None if row is None else _record(self.backend.decode(row))
        return record if record is not None and record.release_at > now else None

    def get(self, action_id: str) -> ActionRecord | None:
        if not _storable(action_id):
            return None
        sql = self._statements["get"]
        row = self._run(lambda conn: conn.execute(sql, (action_id,)).fetchone(), retry=True)
        return None if row is None else _record(self.backend.decode(row))

    def cancel(self, action_id: str, now: datetime) -> ActionRecord | None:
        if not _storable(action_id):
            return None
        now_us = to_us(now)
        params = (now_us, now_us, action_id, now_us)
        sql = self._statements["cancel"]
        # Not repeated after a broken connection: a second run could lose to the first.
        row = self._run(
            lambda conn: self.backend.write(conn, sql, params).fetchone(), retry=False
        )
        return None if row is None else _record(self.backend.decode(row))

    def release(self, action_id: str) -> bool:
        if not _storable(action_id):
            return False
        sql = self._statements["release"]
        done = self._run(
            lambda conn: self.backend.write(conn, sql, (action_id,)).rowcount, retry=False
        )
        return done == 1

    def sweep(self, now: datetime, limit: int) -> int:
        if limit <= 0:
            return 0
        now_us = to_us(now)
        sql = self._statements["sweep"]
        return int(self._run(
            lambda conn: self.backend.write(conn, sql, (now_us, limit, now_us)).rowcount,
            retry=True,
        ))

    def enumerate(
        self,
        principals: frozenset[str],
        roles: frozenset[str],
        statuses: frozenset[str],
        now: datetime,
        limit: int,
        after: tuple[datetime, str] | None = None,
    ) -> list[ActionRecord]:
        now_us = to_us(now)
        chosen = [_STATUS_SQL[status] for status in sorted(statuses) if status in _STATUS_SQL]
        mask = sum(_ROLE_BITS[role] for role in roles if role in _ROLE_BITS)
        if not principals or not mask or not chosen or limit <= 0:
            return []
        names = sorted(principals)
        params: list[Any] = [*names, mask]
        after_sql = ""
        if after is not None:
            after_us = to_us(after[0])
            after_sql = " AND (start_time_us > @ OR (start_time_us = @ AND action_id > @))"
            params += [after_us, after_us, after[1]]
        params += [now_us, *[now_us] * len(chosen), limit]
        text = (
            _STATEMENTS["enumerate"].replace("<principals>", ", ".join("@" * len(names)))
            .replace("<after>", after_sql).replace("<statuses>", " OR ".join(chosen))
        )
        sql = _sql(text, pg=self.backend.pg)
        rows = self._run(lambda conn: conn.execute(sql, params).fetchall(), retry=True)
        return [_record(self.backend.decode(row)) for row in rows]

    def ping(self) -> bool:
        try:
            return self._run(lambda conn: conn.execute("SELECT 1").fetchone()[0] == 1, retry=True)
        except StoreError:
            return False

    def close(self) -> None:
        """Close every connection; a later call opens new ones."""
        pool, self._pool = self._pool, ConnectionPool(self.backend, self.settings)
        pool.close()

    def __len__(self) -> int:
        sql = self._statements["count"]
        return int(self._run(lambda conn: conn.execute(sql).fetchone()[0], retry=True))


# --- URLs --------------------------------------------------------------------------
def libpq_conninfo(url: str) -> tuple[str, bool]:
    """The libpq URI of a PostgreSQL STORE_URL, and whether prepared
    statements are on (our one key of its query, ``prepared_statements``,
    removed; the rest passed to libpq as written)."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in ("postgresql", "postgres", "postgresql+psycopg"):
        raise ValueError(f"not a SQL store URL: {scheme!r}")
    base, _, query = rest.partition("?")
    kept, prepared = [], "on"
    for item in query.split("&") if query else []:
        name, _, value = item.partition("=")
        if name == "prepared_statements":
            prepared = value
        else:
            kept.append(item)
    if prepared not in ("on", "off"):
        raise ValueError(f"prepared_statements must be on or off, not {prepared!r}")
    conninfo = "postgresql://" + base + ("?" + "&".join(kept) if kept else "")
    try:
        conninfo_to_dict(conninfo)  # libpq's own check of the URL
    except psycopg.ProgrammingError as error:
        raise ValueError(str(error).strip().splitlines()[0]) from None
    return conninfo, prepared == "on"


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite:///path`` STORE_URL, if its folder exists."""
    parts = urlsplit(url)
    path = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if parts.netloc or not path or path == ":memory:" or parts.query or path.startswith("file:"):
        raise ValueError("sqlite needs a file path: sqlite:///path/to/actions.db")
    folder = Path(path).absolute().parent
    if not folder.is_dir():
        raise ValueError(f"sqlite: no such directory {str(folder)!r}")
    return path


# --- values ----------------------------------------------------------------------------
def to_us(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError("naive datetime: stores take timezone-aware times only")
    return (value - _EPOCH) // _US


def from_us(value: int) -> datetime:
    return _EPOCH + value * _US


def _store_unavailable(cause: BaseException) -> StoreUnavailable:
    # The driver's first line ("connection refused", "database is locked",
    # "canceling statement due to statement timeout") names the failure; it
    # never carries the URL's password nor a statement's values.
    first_line = (str(cause).strip().splitlines() or [""])[0][:200]
    return StoreUnavailable(f"cannot use the action store: {type(cause).__name__}: {first_line}")


def _store_refused(cause: BaseException) -> StoreError:
    """An unexpected driver error (a bug: a 500), named without its text: the
    server's DETAIL and CONTEXT lines quote a statement's values (a label, a
    request_id), and the error is logged."""
    code = getattr(cause, "sqlstate", None) or getattr(cause, "sqlite_errorname", None)
    return StoreError(f"the action store refused a statement: {type(cause).__name__} ({code})")


def _storable(text: str) -> bool:
    """False for text no stored value can equal: PostgreSQL refuses NUL in text
    (an error, not a miss), and no action id has one."""
    return "\x00" not in text


_INHERITED: list[ConnectionPool] = []  # a forked child's copies of its parent's pools


def _forget_in_child(ref: weakref.ref[SQLStore]) -> None:
    store = ref()
    if store is not None:
        # The parent still owns those connections: the child must neither use
        # nor close them (closing says goodbye to the server on the parent's
        # behalf), so it keeps them, unused, for as long as it lives.
        _INHERITED.append(store._pool)
        store._pool = ConnectionPool(store.backend, store.settings)


def _row(record: ActionRecord) -> dict[str, Any]:
    cancelled = record.cancelled_at
    return {
        "action_id": record.action_id,
        "creator_id": record.creator_id,
        "request_id": record.request_id,
        "fingerprint": record.fingerprint,
        "start_time_us": to_us(record.start_time),
        "estimated_completion_time_us": to_us(record.estimated_completion_time),
        "release_after_us": record.release_after // _US,
        "result": record.result,
        "monitor_by": list(record.monitor_by),
        "manage_by": list(record.manage_by),
        "label": record.label,
        "cancelled_at_us": None if cancelled is None else to_us(cancelled),
        "release_at_us": to_us(record.release_at),
    }


def _principal_rows(record: ActionRecord) -> list[tuple[str, int]]:
    """(principal, role bits) of each principal of ``record``, sorted."""
    masks: dict[str, int] = {record.creator_id: _ROLE_BITS["creator_id"]}
    for role in ("monitor_by", "manage_by"):
        for principal in getattr(record, role):
            masks[principal] = masks.get(principal, 0) | _ROLE_BITS[role]
    return sorted(masks.items())


def _record(row: dict[str, Any]) -> ActionRecord:
    cancelled = row["cancelled_at_us"]
    return ActionRecord(
        action_id=row["action_id"],
        creator_id=row["creator_id"],
        request_id=row["request_id"],
        fingerprint=bytes(row["fingerprint"]),
        start_time=from_us(row["start_time_us"]),
        estimated_completion_time=from_us(row["estimated_completion_time_us"]),
        release_after=row["release_after_us"] * _US,
        result=row["result"],
        monitor_by=tuple(row["monitor_by"]),
        manage_by=tuple(row["manage_by"]),
        label=row["label"],
        cancelled_at=None if cancelled is None else from_us(cancelled),
    )
