"""Action stores, chosen by URL: memory:// (default), sqlite:///..., postgresql://..."""

from __future__ import annotations

from app.store.base import ActionRecord, ActionStore
from app.store.memory import MemoryStore

__all__ = ["ActionRecord", "ActionStore", "MemoryStore", "open_store"]


class UnknownStoreURL(ValueError):
    pass


def open_store(url: str) -> ActionStore:
    """Open the store that ``url`` names."""
    if url in ("memory://", "memory"):
        return MemoryStore()
    raise UnknownStoreURL(f"unsupported STORE_URL {url.split(':', 1)[0]!r}: use memory://")
