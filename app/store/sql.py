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
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
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
        self.url = engine_url(url)
        self.dialect = self.url.get_backend_name()
        self._insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        self._engine = self._make_engine()
        self._autocommit = self._engine.execution_options(isolation_level="AUTOCOMMIT")
        self._migrate()
        # Whatever forks this process next (gunicorn --preload, multiprocessing)
        # must not share pooled connections with it: start the child's pool empty.
        self._engine.dispose()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _dispose_in_child(ref))

    # --- engine and schema ----------------------------------------------------
    def _make_engine(self) -> Engine:
        # hide_parameters: a driver error's text (logged with a 500) must not
        # carry the values of a statement: request_ids, labels, results.
        if self.dialect == "postgresql":
            return sa.create_engine(self.url, pool_pre_ping=True, hide_parameters=True)
        engine = sa.create_engine(
            self.url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            hide_parameters=True,
        )

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # We issue BEGIN ourselves (below); the driver must not.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged write is on disk
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)}")
            cursor.close()

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
            if self.dialect == "postgresql":
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
    def _one_statement(self) -> Iterator[Connection]:
        """For a write that is one statement, hence atomic by itself.

        PostgreSQL runs it in autocommit mode, saving the BEGIN and COMMIT
        round trips; SQLite still takes the write lock up front.
        """
        if self.dialect == "postgresql":
            with _unavailable_as_store_error(), self._autocommit.connect() as conn:
                yield conn
        else:
            with self._write() as conn:
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        # One SELECT needs no transaction; on PostgreSQL skip its round trips.
        engine = self._autocommit if self.dialect == "postgresql" else self._engine
        with _unavailable_as_store_error(), engine.connect() as conn:
            yield conn

    # --- the ActionStore protocol --------------------------------------------
    def create(self, record: ActionRecord, now: datetime) -> tuple[ActionRecord, bool]:
        now_us = to_us(now)
        row = _row(record)
        insert = (
            self._insert(actions)
            .values(**row)
            .on_conflict_do_nothing()
            .returning(actions.c.action_id)
        )
        key = (actions.c.creator_id == record.creator_id) & (
            actions.c.request_id == record.request_id
        )
        for _ in range(8):
            with self._write() as conn:
                if conn.execute(insert).first() is not None:
                    conn.execute(action_principals.insert(), _principal_rows(record))
                    return _record(row), True
                existing = conn.execute(sa.select(actions).where(key)).mappings().first()
                if existing is None:
                    continue  # released between our INSERT and SELECT: try again
                if existing["release_at_us"] > now_us:
                    return _record(existing), False
                # An expired action still holds the request_id: it counts as gone.
                conn.execute(
                    actions.delete().where(
                        (actions.c.action_id == existing["action_id"])
                        & (actions.c.release_at_us <= now_us)
                    )
                )
                if conn.execute(insert).first() is not None:
                    conn.execute(action_principals.insert(), _principal_rows(record))
                    return _record(row), True
        raise RuntimeError("request_id kept changing hands; giving up")  # pragma: no cover

    def get(self, action_id: str) -> ActionRecord | None:
        if not _storable(action_id):
            return None
        with self._read() as conn:
            row = (
                conn.execute(sa.select(actions).where(actions.c.action_id == action_id))
                .mappings()
                .first()
            )
        return None if row is None else _record(row)

    def cancel(self, action_id: str, now: datetime) -> ActionRecord | None:
        if not _storable(action_id):
            return None
        now_us = to_us(now)
        update = (
            actions.update()
            .where(
                (actions.c.action_id == action_id)
                & actions.c.cancelled_at_us.is_(None)
                & (actions.c.estimated_completion_time_us > now_us)
            )
            .values(
                cancelled_at_us=now_us,
                release_at_us=sa.literal(now_us, sa.BigInteger) + actions.c.release_after_us,
            )
            .returning(*actions.c)
        )
        with self._one_statement() as conn:
            row = conn.execute(update).mappings().first()
        return None if row is None else _record(row)

    def release(self, action_id: str) -> bool:
        if not _storable(action_id):
            return False
        delete = (
            actions.delete().where(actions.c.action_id == action_id).returning(actions.c.action_id)
        )
        with self._one_statement() as conn:
            return conn.execute(delete).first() is not None

    def sweep(self, now: datetime, limit: int) -> int:
        if limit <= 0:
            return 0
        now_us = to_us(now)
        due = (
            sa.select(actions.c.action_id)
            .where(actions.c.release_at_us <= now_us)
            .order_by(actions.c.release_at_us)
            .limit(limit)
        )
        if self.dialect == "postgresql":
            # Concurrent sweeps on other workers take different rows.
            due = due.with_for_update(skip_locked=True)
        delete = (
            actions.delete()
            .where(actions.c.action_id.in_(due.scalar_subquery()))
            .where(actions.c.release_at_us <= now_us)
            .returning(actions.c.action_id)
        )
        with self._one_statement() as conn:
            return len(conn.execute(delete).all())

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
            with self._read() as conn:
                return conn.execute(sa.text("SELECT 1")).scalar() == 1
        except (StoreError, sa.exc.SQLAlchemyError):
            return False

    def close(self) -> None:
        self._engine.dispose()

    def __len__(self) -> int:
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(actions)).scalar_one())


@contextmanager
def _unavailable_as_store_error() -> Iterator[None]:
    try:
        yield
    except _UNAVAILABLE as error:
        # The driver's first line ("connection refused", "database is locked")
        # names the failure; it never carries the URL's password.
        cause = error.orig or error
        first_line = (str(cause).strip().splitlines() or [""])[0][:200]
        raise StoreUnavailable(
            f"cannot use the action store: {type(cause).__name__}: {first_line}"
        ) from error


def _storable(text: str) -> bool:
    """False for text no stored value can equal: PostgreSQL refuses NUL in text
    (an error, not a miss), and no action id has one."""
    return "\x00" not in text


def _dispose_in_child(ref: weakref.ref[SQLStore]) -> None:
    store = ref()
    if store is not None:
        # close=False: the parent still owns those connections.
        store._engine.dispose(close=False)


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
