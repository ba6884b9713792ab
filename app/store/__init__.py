"""Action stores, chosen by URL: memory:// (default), sqlite:///..., postgresql://..."""

from __future__ import annotations

from app.store.base import ActionRecord, ActionStore, StoreError, StoreUnavailable
from app.store.memory import MemoryStore

__all__ = [
    "ActionRecord",
    "ActionStore",
    "MemoryStore",
    "StoreError",
    "StoreUnavailable",
    "UnknownStoreURL",
    "open_store",
]

SUPPORTED = "memory://, sqlite:///path/to/actions.db or postgresql://user@host/dbname"


class UnknownStoreURL(ValueError):
    pass


def open_store(url: str) -> ActionStore:
    """Open the store that ``url`` names."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else url.lower()
    if scheme == "memory":
        if url not in ("memory://", "memory"):
            raise UnknownStoreURL(f"STORE_URL memory:// takes no path or options; use {SUPPORTED}")
        return MemoryStore()
    if scheme in ("sqlite", "postgresql", "postgres", "postgresql+psycopg"):
        from sqlalchemy.exc import ArgumentError, SQLAlchemyError

        from app.store.diagnosis import explain
        from app.store.sql import SQLStore  # SQLAlchemy only when a SQL store is asked for

        try:
            return SQLStore(url)
        except (ValueError, ArgumentError) as error:
            raise UnknownStoreURL(f"bad STORE_URL: {error}") from None
        except (StoreError, SQLAlchemyError) as error:
            explained = explain(url, error)  # start-up: one line saying what to do
            if explained is None:
                raise
            raise StoreError(explained) from error
    raise UnknownStoreURL(f"unsupported STORE_URL scheme {scheme!r}: use {SUPPORTED}")
