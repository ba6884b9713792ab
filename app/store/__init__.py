"""Action stores, chosen by URL: memory:// (default), sqlite:///..., postgresql://..."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.store.base import (
    ActionRecord,
    ActionStore,
    LiveActionLimitReached,
    StoreError,
    StoreFull,
    StoreUnavailable,
)
from app.store.memory import DEFAULT_CAPACITY, MemoryStore

__all__ = [
    "ActionRecord",
    "ActionStore",
    "LiveActionLimitReached",
    "MemoryStore",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "UnknownStoreURL",
    "open_store",
]

SUPPORTED = "memory://, sqlite:///path/to/actions.db or postgresql://user@host/dbname"


class UnknownStoreURL(ValueError):
    pass


def open_store(url: str, config: Mapping[str, Any] | None = None) -> ActionStore:
    """Open the store that ``url`` names; the memory store takes its capacity
    (MEMORY_STORE_CAPACITY), a SQL store its pool settings (STORE_POOL_SIZE,
    ...) from ``config``, config.py's defaults without one."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else url.lower()
    if scheme == "memory":
        if url not in ("memory://", "memory"):
            raise UnknownStoreURL(f"STORE_URL memory:// takes no path or options; use {SUPPORTED}")
        capacity = DEFAULT_CAPACITY if config is None else config["MEMORY_STORE_CAPACITY"]
        return MemoryStore(int(capacity))
    if scheme in ("sqlite", "postgresql", "postgres", "postgresql+psycopg"):
        from app.store.diagnosis import explain
        from app.store.sql import DRIVER_ERRORS, PoolSettings, SQLStore  # the drivers only now

        try:
            settings = PoolSettings() if config is None else PoolSettings.from_config(config)
            return SQLStore(url, settings)
        except ValueError as error:
            raise UnknownStoreURL(f"bad STORE_URL: {error}") from None
        except (StoreError, *DRIVER_ERRORS) as error:
            explained = explain(url, error)  # start-up: one line saying what to do
            if explained is None:
                raise
            raise StoreError(explained) from error
    raise UnknownStoreURL(f"unsupported STORE_URL scheme {scheme!r}: use {SUPPORTED}")
