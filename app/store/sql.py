"""SQLite and PostgreSQL stores: one SQLAlchemy Core backend for both.

Every state change is one statement whose WHERE clause is the compare-and-set,
so it is atomic across threads, processes and hosts:

- create:  INSERT ... ON CONFLICT DO NOTHING on UNIQUE (creator_id, request_id)
           (an expired holder of the request_id is deleted first, in the same
           transaction);
- cancel:  UPDATE ... WHERE not cancelled AND not yet complete ... RETURNING;
- release: DELETE ... RETURNING;
- sweep:   DELETE of at most ``limit`` rows whose release_at has passed.

Times are stored as integer microseconds since the Unix epoch (UTC). That keeps
``release_at = cancelled_at + release_after`` one portable expression inside
the cancel UPDATE, compares exactly in SQLite (which has no timestamp type) and
PostgreSQL alike, and cannot be shifted by a session time zone. Records come
back with timezone-aware UTC datetimes.

Enumeration by principal uses a side table ``action_principals`` (principal,
start_time_us, action_id, roles): one B-tree row per principal of an action,
``roles`` a bit mask of creator_id / monitor_by / manage_by (usually the
creator holds all three: one row, not three). Unlike arrays with a GIN index it
works the same on SQLite and PostgreSQL, and its primary key is already
ordered the way enumerate pages (start_time, action_id), so a page is an index
range scan per principal instead of a scan of all actions.

Round trips (bench/README.md has the figures). The hot operations (create,
get, cancel, release, sweep, ping) go straight to the driver, on one
connection per thread: SQLAlchemy Core measured 60-120 us a statement on
top of psycopg's 40 us for a ``SELECT 1`` (bench/README.md, issue 15). On
PostgreSQL each is one statement in autocommit mode, so one round trip:
create is a single statement (a CTE inserting the action and its principal
rows). There is no
pre-ping: an idle connection the server has closed is seen on its socket
(no round trip) and replaced; one that breaks during a statement is replaced
and the statement repeated when repeating it is safe (reads, create, sweep),
else the caller gets StoreUnavailable (503, Retry-After). Enumeration, schema
set-up and counting stay on SQLAlchemy Core.

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
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url

from app.store.base import ActionRecord, StoreError, StoreUnavailable

SCHEMA_VERSION = 1
# Upgrades from version N to N + 1, run in order inside the schema lock.
MIGRATIONS: dict[int, Any] = {}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_ROLE_BITS = {"creator_id": 1, "monitor_by": 2, "manage_by": 4}
_PG_LOCK_KEY = 0x7768_6174  # pg_advisory_xact_lock key serialising schema setup
SQLITE_BUSY_TIMEOUT_SECONDS = 30.0
PREPARE_THRESHOLD = 2  # psycopg prepares a statement from its second use on a connection
_T = TypeVar("_T")

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, nullable=False),
)

actions = sa.Table(
    "actions",
    metadata,
    sa.Column("action_id", sa.String(64), primary_key=True),
    sa.Column("creator_id", sa.Text, nullable=False),
    sa.Column("request_id", sa.Text, nullable=False),
    sa.Column("fingerprint", sa.LargeBinary, nullable=False),
    sa.Column("start_time_us", sa.BigInteger, nullable=False),
    sa.Column("estimated_completion_time_us", sa.BigInteger, nullable=False),
    sa.Column("release_after_us", sa.BigInteger, nullable=False),
    sa.Column("result", sa.Text, nullable=True),
    sa.Column("monitor_by", sa.JSON, nullable=False),
    sa.Column("manage_by", sa.JSON, nullable=False),
    sa.Column("label", sa.Text, nullable=True),
    sa.Column("cancelled_at_us", sa.BigInteger, nullable=True),
    # completion (cancelled_at or estimate) + release_after; kept right by cancel.
    sa.Column("release_at_us", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("creator_id", "request_id", name="actions_request_key"),
    sa.Index("actions_release_at", "release_at_us"),
)

action_principals = sa.Table(
    "action_principals",
    metadata,
    sa.Column("principal", sa.Text, primary_key=True),
    sa.Column("start_time_us", sa.BigInteger, primary_key=True),
    sa.Column(
        "action_id",
        sa.String(64),
        sa.ForeignKey("actions.action_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("roles", sa.SmallInteger, nullable=False),  # bits of _ROLE_BITS
    # For the cascade when an action is released or swept.
    sa.Index("action_principals_action", "action_id"),
)


class SchemaTooNew(StoreError):
    """The database was written by newer code than this."""


# Driver errors that mean "the database is not answering", not "a bug".
_UNAVAILABLE = (sa.exc.OperationalError, sa.exc.InterfaceError)


def to_us(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError("naive datetime: stores take timezone-aware times only")
    return (value - _EPOCH) // _US


def from_us(value: int) -> datetime:
    return _EPOCH + value * _US


def engine_url(url: str) -> URL:
    """The SQLAlchemy URL for a STORE_URL, with the driver this project pins."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        if parsed.drivername not in ("postgresql", "postgres", "postgresql+psycopg"):
            raise ValueError(f"use postgresql:// (psycopg 3), not {parsed.drivername!r}")
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        database = parsed.database or ""
        if not database or database == ":memory:" or database.startswith("file:"):
            raise ValueError("sqlite needs a file path: sqlite:///path/to/actions.db")
        folder = os.path.dirname(os.path.abspath(database))
        if not os.path.isdir(folder):
            raise ValueError(f"sqlite: no such directory {folder!r}")
        return parsed.set(drivername="sqlite+pysqlite")
    raise ValueError(f"not a SQL store URL: {parsed.drivername!r}")


class SQLStore:
    """An ActionStore in SQLite or PostgreSQL (see the module docstring)."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.prepared = _prepared_statements(parsed.query.get("prepared_statements", "on"))
        self.url = engine_url(url).difference_update_query(["prepared_statements"])
        self.dialect = self.url.get_backend_name()
        self._pg = self.dialect == "postgresql"
        self._sql = _PG_SQL if self._pg else _SQLITE_SQL
        self._engine = self._make_engine()
        self._autocommit = self._engine.execution_options(isolation_level="AUTOCOMMIT")
        self._threads = _PerThread()
        self._open: set[Any] = set()  # every hot-path connection, for close()
        self._lock = threading.Lock()
        self._migrate()
        # Whatever forks this process next (gunicorn --preload, multiprocessing)
        # must not share connections with it: start the child with none.
        self._engine.dispose()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forget_in_child(ref))

    # --- engine and schema ----------------------------------------------------
    def _make_engine(self) -> Engine:
        # hide_parameters: a driver error's text (logged with a 500) must not
        # carry the values of a statement: request_ids, labels, results.
        if self._pg:
            engine = sa.create_engine(
                self.url,
                hide_parameters=True,
                connect_args={"prepare_threshold": PREPARE_THRESHOLD if self.prepared else None},
            )

            @sa.event.listens_for(engine, "checkout")
            def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
                # Instead of pool_pre_ping's round trip: a connection the server
                # closed (restart, idle timeout) is replaced before it is used.
                if _closed_by_server(dbapi_connection):
                    raise sa.exc.DisconnectionError("closed by the server")

            return engine
        engine = sa.create_engine(
            self.url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            hide_parameters=True,
        )

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # We issue BEGIN ourselves (below); the driver must not.
            dbapi_connection.isolation_level = None
            _sqlite_pragmas(dbapi_connection)

        @sa.event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            # Writers take the write lock up front (BEGIN IMMEDIATE), so two
            # processes never deadlock upgrading a read lock; readers stay
            # deferred and, under WAL, never wait for writers.
            connection.exec_driver_sql(connection.get_execution_options().get("begin", "BEGIN"))

        return engine

    def _migrate(self) -> None:
        """Create the tables if missing, or upgrade them, under a lock so that
        several workers starting together do it once."""
        with self._write() as conn:
            if self._pg:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
            if not sa.inspect(conn).has_table("schema_version"):
                metadata.create_all(conn)
                conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
                return
            version = conn.execute(sa.select(schema_version.c.version)).scalar_one()
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"the store's schema is version {version}; this code knows up to "
                    f"{SCHEMA_VERSION}: upgrade the code"
                )
            while version < SCHEMA_VERSION:
                MIGRATIONS[version](conn)
                version += 1
                conn.execute(schema_version.update().values(version=version))

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with _unavailable_as_store_error(), self._engine.connect() as conn:
            conn.execution_options(begin="BEGIN IMMEDIATE")
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        # One SELECT needs no transaction; on PostgreSQL skip its round trips.
        engine = self._autocommit if self._pg else self._engine
        with _unavailable_as_store_error(), engine.connect() as conn:
            yield conn

    # --- the hot path: one driver connection per thread -------------------------
    def _connection(self) -> Any:
        conn = self._threads.conn
        if conn is not None and self._pg and _closed_by_server(conn):
            self._discard(conn)
            conn = None
        if conn is None:
            try:
                conn = self._connect()
            except self._sql.errors as error:
                raise _store_unavailable(error) from error
            with self._lock:
                self._open.add(conn)
            self._threads.conn = conn
            # One cursor per connection, reused by every statement: psycopg's
            # conn.execute makes a new one each time (~15-30 us a statement
            # here, bench/README.md).
            self._threads.cursor = conn.cursor() if self._pg else conn
        return conn

    def _connect(self) -> Any:
        if self._pg:
            conninfo = self.url.set(drivername="postgresql").render_as_string(False)
            threshold = PREPARE_THRESHOLD if self.prepared else None
            extra = {} if "connect_timeout" in self.url.query else {"connect_timeout": 5}
            return psycopg.connect(conninfo, autocommit=True, prepare_threshold=threshold, **extra)
        conn = sqlite3.connect(
            self.url.database or "",
            timeout=SQLITE_BUSY_TIMEOUT_SECONDS,
            isolation_level=None,  # autocommit; writers say BEGIN IMMEDIATE themselves
            check_same_thread=False,
        )
        _sqlite_pragmas(conn)
        return conn

    def _discard(self, conn: Any) -> None:
        if self._threads.conn is conn:
            self._threads.conn = self._threads.cursor = None
        with self._lock:
            self._open.discard(conn)
        with suppress(Exception):
            conn.close()

    def _execute(self, work: Callable[[Any], _T], *, retry: bool) -> _T:
        """``work(cursor)`` on this thread's connection (SQLite: the connection).

        A connection that breaks is replaced; ``work`` is then run once more
        if ``retry`` (it is safe to repeat: a read, or a write whose second
        run cannot differ from the first), else StoreUnavailable (a 503).
        """
        for attempt in range(2):
            conn = self._connection()
            try:
                return work(self._threads.cursor)
            except self._sql.errors as error:
                broken = self._broken(conn)
                if broken:
                    self._discard(conn)
                if not (broken and retry and attempt == 0):
                    raise _store_unavailable(error) from error
        raise AssertionError("unreachable")  # pragma: no cover

    def _broken(self, conn: Any) -> bool:
        if self._pg:
            return bool(conn.broken or conn.closed)
        if conn.in_transaction:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        return False

    def _write_one(self, conn: Any, sql: str, params: Sequence[Any]) -> Any:
        """One write statement. PostgreSQL: autocommit, one round trip. SQLite:
        inside BEGIN IMMEDIATE (a deferred write could fail at once with
        SQLITE_BUSY instead of waiting for the lock)."""
        if self._pg:
            return conn.execute(sql, params)
        conn.execute("BEGIN IMMEDIATE")
        try:
            cursor = conn.execute(sql, params)
            rows = cursor.fetchall()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return _Fetched(rows, cursor.rowcount)

    # --- the ActionStore protocol --------------------------------------------
    def create(self, record: ActionRecord, now: datetime) -> tuple[ActionRecord, bool]:
        now_us = to_us(now)
        row = _row(record)
        values = [row[name] for name in _COLUMNS]
        values[_JSON_AT[0]] = json.dumps(values[_JSON_AT[0]])
        values[_JSON_AT[1]] = json.dumps(values[_JSON_AT[1]])
        principals = _principal_rows(record)
        key = (record.creator_id, record.request_id)
        for _ in range(8):
            # Safe to repeat: a second run finds the first one's action by its
            # request_id and returns it (the caller then answers as for a retry).
            if self._execute(
                lambda conn: self._insert_action(conn, values, principals), retry=True
            ):
                return _record(row), True
            existing = self._execute(
                lambda conn: conn.execute(self._sql.by_request, key).fetchone(), retry=True
            )
            if existing is None:
                continue  # released since our INSERT: try again
            stored = self._record(existing)
            if to_us(stored.release_at) > now_us:
                return stored, False
            # An expired action still holds the request_id: it counts as gone.
            expired = (stored.action_id, now_us)
            self._execute(
                lambda conn, expired=expired: self._write_one(
                    conn, self._sql.delete_expired, expired
                ),
                retry=True,
            )
        raise RuntimeError("request_id kept changing hands; giving up")  # pragma: no cover

    def _insert_action(
        self, conn: Any, values: list[Any], principals: list[dict[str, Any]]
    ) -> bool:
        """Insert the action and its principal rows unless the request_id (or
        action_id) is taken; True if inserted. PostgreSQL: one statement."""
        names = [p["principal"] for p in principals]
        roles = [p["roles"] for p in principals]
        if self._pg:
            return bool(conn.execute(self._sql.create, [*values, names, roles]).fetchone()[0])
        conn.execute("BEGIN IMMEDIATE")
        try:
            inserted = conn.execute(self._sql.create, values).rowcount == 1
            if inserted:
                start, action_id = values[_START_AT], values[0]
                conn.executemany(
                    self._sql.insert_principal,
                    [
                        (name, start, action_id, mask)
                        for name, mask in zip(names, roles, strict=True)
                    ],
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return inserted

    def get(self, action_id: str) -> ActionRecord | None:
        if not _storable(action_id):
            return None
        row = self._execute(
            lambda conn: conn.execute(self._sql.get, (action_id,)).fetchone(), retry=True
        )
        return None if row is None else self._record(row)

    def find_request(self, creator_id: str, request_id: str, now: datetime) -> ActionRecord | None:
        if not _storable(request_id):
            return None
        row = self._execute(
            lambda conn: conn.execute(self._sql.by_request, (creator_id, request_id)).fetchone(),
            retry=True,
        )
        record = None if row is None else self._record(row)
        return record if record is not None and record.release_at > now else None

    def cancel(self, action_id: str, now: datetime) -> ActionRecord | None:
        if not _storable(action_id):
            return None
        now_us = to_us(now)
        params = (now_us, now_us, action_id, now_us)
        # Not repeated after a broken connection: a second run could lose to the first.
        row = self._execute(
            lambda conn: self._write_one(conn, self._sql.cancel, params).fetchone(), retry=False
        )
        return None if row is None else self._record(row)

    def release(self, action_id: str) -> bool:
        if not _storable(action_id):
            return False
        done = self._execute(
            lambda conn: self._write_one(conn, self._sql.release, (action_id,)).rowcount,
            retry=False,
        )
        return done == 1

    def sweep(self, now: datetime, limit: int) -> int:
        if limit <= 0:
            return 0
        now_us = to_us(now)
        return int(
            self._execute(
                lambda conn: (
                    self._write_one(conn, self._sql.sweep, (now_us, limit, now_us)).rowcount
                ),
                retry=True,
            )
        )

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
        status_clause = _status_clause(statuses, now_us)
        mask = sum(_ROLE_BITS[role] for role in roles if role in _ROLE_BITS)
        if not principals or not mask or status_clause is None or limit <= 0:
            return []
        p = action_principals
        mine = sa.select(p.c.action_id).where(
            p.c.principal.in_(sorted(principals)), p.c.roles.bitwise_and(mask) != 0
        )
        if after is not None:
            after_us, after_id = to_us(after[0]), after[1]
            mine = mine.where(
                (p.c.start_time_us > after_us)
                | ((p.c.start_time_us == after_us) & (p.c.action_id > after_id))
            )
        query = (
            sa.select(actions)
            .where(actions.c.action_id.in_(mine.scalar_subquery()))
            .where(actions.c.release_at_us > now_us)
            .where(status_clause)
            .order_by(actions.c.start_time_us, actions.c.action_id)
            .limit(limit)
        )
        with self._read() as conn:
            return [_record(row) for row in conn.execute(query).mappings()]

    def ping(self) -> bool:
        try:
            return self._execute(
                lambda conn: conn.execute("SELECT 1").fetchone()[0] == 1, retry=True
            )
        except StoreError:
            return False

    def close(self) -> None:
        with self._lock:
            conns, self._open = self._open, set()
        for conn in conns:
            with suppress(Exception):
                conn.close()
        self._threads = _PerThread()
        self._engine.dispose()

    def __len__(self) -> int:
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(actions)).scalar_one())

    def _record(self, row: Sequence[Any]) -> ActionRecord:
        mapping = dict(zip(_COLUMNS, row, strict=True))
        if not self._pg:  # SQLite keeps JSON as text; psycopg decodes json columns
            for name in ("monitor_by", "manage_by"):
                mapping[name] = json.loads(mapping[name])
        return _record(mapping)


class _PerThread(threading.local):
    conn: Any = None
    cursor: Any = None  # PostgreSQL: conn's one cursor; SQLite: conn itself


class _Fetched:
    """What a SQLite write returns, read before its COMMIT (the cursor's
    rows do not survive it)."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows, self.rowcount = rows, rowcount

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None


# --- the hot statements, per dialect ----------------------------------------------
_COLUMNS = tuple(column.name for column in actions.c)
_JSON_AT = (_COLUMNS.index("monitor_by"), _COLUMNS.index("manage_by"))
_START_AT = _COLUMNS.index("start_time_us")
_NAMES = ", ".join(_COLUMNS)


# Written with "@" for the driver's parameter mark and "<columns>" for _NAMES
# (only constants are pasted in, never values).
_TEMPLATES = {
    "get": "SELECT <columns> FROM actions WHERE action_id = @",
    "by_request": "SELECT <columns> FROM actions WHERE creator_id = @ AND request_id = @",
    "insert": "INSERT INTO actions (<columns>) VALUES (<marks>) ON CONFLICT DO NOTHING",
    "insert_principal": (
        "INSERT INTO action_principals (principal, start_time_us, action_id, roles) "
        "VALUES (@, @, @, @)"
    ),
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
    # PostgreSQL: one statement, one round trip, for the action and its principal rows.
    "create_pg": (
        "WITH ins AS (<insert> RETURNING action_id, start_time_us), "
        "p AS (INSERT INTO action_principals (principal, start_time_us, action_id, roles) "
        "SELECT u.principal, ins.start_time_us, ins.action_id, u.roles FROM ins, "
        "unnest(@::text[], @::smallint[]) AS u(principal, roles)) "
        "SELECT count(*) FROM ins"
    ),
}


@dataclasses.dataclass(frozen=True)
class _Statements:
    errors: tuple[type[Exception], ...]  # the driver's "database not answering"
    get: str
    by_request: str
    create: str
    insert_principal: str
    delete_expired: str
    cancel: str
    release: str
    sweep: str


def _statements(mark: str, errors: tuple[type[Exception], ...]) -> _Statements:
    pg = mark == "%s"
    casts = {"monitor_by": "@::json", "manage_by": "@::json"} if pg else {}
    marks = ", ".join(casts.get(name, "@") for name in _COLUMNS)
    # Concurrent sweeps on PostgreSQL take different rows; SQLite's BEGIN
    # IMMEDIATE serialises them anyway.
    lock = " FOR UPDATE SKIP LOCKED" if pg else ""

    def sql(name: str) -> str:
        text = _TEMPLATES[name].replace("<insert>", _TEMPLATES["insert"])
        text = text.replace("<marks>", marks).replace("<columns>", _NAMES)
        return text.replace("<lock>", lock).replace("@", mark)

    return _Statements(
        errors=errors,
        get=sql("get"),
        by_request=sql("by_request"),
        create=sql("create_pg" if pg else "insert"),
        insert_principal=sql("insert_principal"),
        delete_expired=sql("delete_expired"),
        cancel=sql("cancel"),
        release=sql("release"),
        sweep=sql("sweep"),
    )


_PG_SQL = _statements("%s", (psycopg.OperationalError, psycopg.InterfaceError))
_SQLITE_SQL = _statements("?", (sqlite3.OperationalError, sqlite3.InterfaceError))


def _prepared_statements(value: str) -> bool:
    if value not in ("on", "off"):
        raise ValueError(f"prepared_statements must be on or off, not {value!r}")
    return value == "on"


def _closed_by_server(conn: Any) -> bool:
    """True if an idle connection is closed or has something to read: the
    server's goodbye (restart, idle timeout) or the end of the stream. Asks
    the socket, not the server: no round trip."""
    if conn.closed:
        return True
    try:
        return bool(select.select([conn.fileno()], [], [], 0)[0])
    except (OSError, ValueError, psycopg.Error):
        return True


def _sqlite_pragmas(conn: Any) -> None:
    cursor = conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged write is on disk
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)}")
    cursor.close()


@contextmanager
def _unavailable_as_store_error() -> Iterator[None]:
    try:
        yield
    except _UNAVAILABLE as error:
        raise _store_unavailable(error.orig or error) from error


def _store_unavailable(cause: BaseException) -> StoreUnavailable:
    # The driver's first line ("connection refused", "database is locked")
    # names the failure; it never carries the URL's password.
    first_line = (str(cause).strip().splitlines() or [""])[0][:200]
    return StoreUnavailable(f"cannot use the action store: {type(cause).__name__}: {first_line}")


def _storable(text: str) -> bool:
    """False for text no stored value can equal: PostgreSQL refuses NUL in text
    (an error, not a miss), and no action id has one."""
    return "\x00" not in text


_INHERITED: list[Any] = []  # a forked child's copies of its parent's connections


def _forget_in_child(ref: weakref.ref[SQLStore]) -> None:
    store = ref()
    if store is not None:
        # The parent still owns those connections: the child must neither use
        # nor close them (closing says goodbye to the server on the parent's
        # behalf), so it keeps them, unused, for as long as it lives.
        store._engine.dispose(close=False)
        _INHERITED.append(store._open)
        store._open = set()
        store._threads = _PerThread()
        store._lock = threading.Lock()


def _status_clause(statuses: frozenset[str], now_us: int) -> sa.ColumnElement[bool] | None:
    """SQL for ``effective_status(record, now) in statuses`` (see base.py)."""
    a = actions.c
    running = a.estimated_completion_time_us > now_us
    clauses = {
        "ACTIVE": a.cancelled_at_us.is_(None) & running,
        "SUCCEEDED": a.cancelled_at_us.is_(None) & ~running & a.result.is_not(None),
        "FAILED": a.cancelled_at_us.is_not(None) | (~running & a.result.is_(None)),
    }
    chosen = [clauses[status] for status in sorted(statuses) if status in clauses]
    return sa.or_(*chosen) if chosen else None


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


def _principal_rows(record: ActionRecord) -> list[dict[str, Any]]:
    masks: dict[str, int] = {record.creator_id: _ROLE_BITS["creator_id"]}
    for role in ("monitor_by", "manage_by"):
        for principal in getattr(record, role):
            masks[principal] = masks.get(principal, 0) | _ROLE_BITS[role]
    start, action_id = to_us(record.start_time), record.action_id
    return [
        {"principal": principal, "start_time_us": start, "action_id": action_id, "roles": mask}
        for principal, mask in sorted(masks.items())
    ]


def _record(row: Any) -> ActionRecord:
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
