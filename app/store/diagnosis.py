"""What to do when a SQL store cannot be opened at start-up: one line naming
the database, user or schema (never the password) and the fix.

Only the opening of a store is explained here; errors while serving are the
store's own (StoreUnavailable, a 503).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from psycopg.conninfo import conninfo_to_dict

from app.store.sql import libpq_conninfo, sqlite_path


def driver_error(error: BaseException) -> BaseException | None:
    """The psycopg or sqlite3 exception under ``error``, if any."""
    seen: BaseException | None = error
    while seen is not None:
        if type(seen).__module__.split(".")[0] in ("psycopg", "sqlite3"):
            return seen
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


def explain(url: str, error: BaseException) -> str | None:
    """One line for a store that failed to open, or None if not foreseen."""
    cause = driver_error(error)
    if cause is None:
        return None
    text = str(cause).strip()
    if url.lower().startswith("sqlite:"):
        path = Path(sqlite_path(url))
        if "unable to open" in text or "readonly" in text or "read-only" in text:
            return (
                f"STORE_URL: SQLite cannot create or write {path}: the service's user needs "
                f"write access to the folder {path.parent} (SQLite writes {path.name}-wal "
                "and -shm beside the file)"
            )
        return None
    parsed = conninfo_to_dict(libpq_conninfo(url)[0])
    user, database = parsed.get("user") or "(your login name)", parsed.get("dbname")
    host = parsed.get("host") or "localhost"
    where = f"{host}:{parsed.get('port') or 5432}"
    schema = _search_path(parsed.get("options")) or "public"
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate == "3F000":  # invalid_schema_name: nothing on search_path to create in
        return (
            f"STORE_URL: PostgreSQL schema {schema!r} does not exist (or user {user!r} has no "
            f"USAGE on it): CREATE SCHEMA {schema} AUTHORIZATION {user}; or name an existing "
            "schema in the URL's options=-csearch_path%3D<schema>"
        )
    if sqlstate == "42501":  # insufficient_privilege
        return (
            f"STORE_URL: PostgreSQL user {user!r} may not create tables in schema {schema!r}: "
            f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {user}; or give the service a schema "
            "of its own"
        )
    if re.search(r'database ".*" does not exist', text):
        return (
            f"STORE_URL: PostgreSQL database {database!r} does not exist on {where}: "
            f"create it (createdb -h {host} -O {user} {database}) "
            "or fix the URL"
        )
    if "password authentication failed" in text or "no password supplied" in text:
        return (
            f"STORE_URL: PostgreSQL at {where} refused the password of user {user!r}: "
            "check the password (in ~/.pgpass, PGPASSWORD or the URL)"
        )
    if re.search(r'role ".*" does not exist', text):
        return f"STORE_URL: PostgreSQL at {where} has no user {user!r}: create it or fix the URL"
    return None


def _search_path(options: str | None) -> str | None:
    """The first schema of ``-csearch_path=...`` in libpq options."""
    found = re.search(r"search_path\s*=\s*([^\s,]+)", unquote(options or ""))
    return found.group(1).strip('"') if found else None
