"""Store URLs for tests: a temporary SQLite file, a fresh PostgreSQL schema.

PostgreSQL: the server at TEST_POSTGRES_URL (default the one these machines
run at 127.0.0.1:5432, database ``test``). Each test gets its own schema,
named after this session, dropped afterwards; the store finds it through the
connection's search_path (tests/postgres.py, shared with bench/). No server:
the test fails with the reason (scripts/test starts a private server when the
default one does not answer).
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from app.store.sql import sqlite_path
from tests.postgres import conninfo, create_schema, drop_schemas

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
_SESSION = f"wt_test_{uuid.uuid4().hex[:10]}"
_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The server's URL, once reachable; drops this session's schemas at the end."""
    try:
        with psycopg.connect(conninfo(POSTGRES_URL), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        where = conninfo_to_dict(conninfo(POSTGRES_URL))
        pytest.fail(f"PostgreSQL at {where.get('host')}:{where.get('port', 5432)} is "
                    f"unreachable: {error} (scripts/test starts a private server when it is)")
    yield POSTGRES_URL
    drop_schemas(POSTGRES_URL, _SESSION + "%")


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A STORE_URL on a new, empty schema, dropped after the test."""
    schema = f"{_SESSION}_{next(_counter)}"
    yield create_schema(postgres_server, schema)
    drop_schemas(postgres_server, schema)


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite:///{tmp_path}/actions.db"


def execute_directly(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the store's database beside the store (autocommit);
    its rows, if any."""
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(sqlite_path(url), isolation_level=None)
        try:
            cursor = conn.execute(sql, params)
            return [tuple(row) for row in cursor.fetchall()]
        finally:
            conn.close()
    with psycopg.connect(conninfo(url), autocommit=True, connect_timeout=3) as conn:
        cursor = conn.execute(sql, params)
        return [tuple(row) for row in cursor.fetchall()] if cursor.description else []
