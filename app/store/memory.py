"""The default store: two dicts in this process, guarded by one lock."""

from __future__ import annotations

import dataclasses
import heapq
import threading
from datetime import datetime

from app.store.base import ActionRecord, effective_status, holds_role


class MemoryStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, ActionRecord] = {}
        self._requests: dict[tuple[str, str], str] = {}
        # (release_at, action_id); entries go stale when an action is cancelled
        # or released, and are checked against the record when they come due.
        self._release_queue: list[tuple[datetime, str]] = []

    def create(self, record: ActionRecord, now: datetime) -> tuple[ActionRecord, bool]:
        key = (record.creator_id, record.request_id)
        with self._lock:
            existing_id = self._requests.get(key)
            if existing_id is not None:
                existing = self._records[existing_id]
                if existing.release_at > now:
                    return existing, False
                self._forget(existing)
            self._records[record.action_id] = record
            self._requests[key] = record.action_id
            heapq.heappush(self._release_queue, (record.release_at, record.action_id))
            return record, True

    def get(self, action_id: str) -> ActionRecord | None:
        return self._records.get(action_id)

    def find_request(self, creator_id: str, request_id: str, now: datetime) -> ActionRecord | None:
        with self._lock:
            action_id = self._requests.get((creator_id, request_id))
            record = None if action_id is None else self._records.get(action_id)
        return record if record is not None and record.release_at > now else None

    def cancel(self, action_id: str, now: datetime) -> ActionRecord | None:
        with self._lock:
            record = self._records.get(action_id)
            if (
                record is None
                or record.cancelled_at is not None
                or record.estimated_completion_time <= now
            ):
                return None
            cancelled = dataclasses.replace(record, cancelled_at=now)
            self._records[action_id] = cancelled
            heapq.heappush(self._release_queue, (cancelled.release_at, action_id))
            return cancelled

    def release(self, action_id: str) -> bool:
        with self._lock:
            record = self._records.get(action_id)
            if record is None:
                return False
            self._forget(record)
            if len(self._release_queue) > 2 * len(self._records) + 64:
                # Drop the stale entries of released actions so memory stays
                # proportional to the live actions (amortised O(1) a release).
                self._release_queue = [(r.release_at, r.action_id) for r in self._records.values()]
                heapq.heapify(self._release_queue)
            return True

    def sweep(self, now: datetime, limit: int) -> int:
        forgotten = 0
        with self._lock:
            queue = self._release_queue
            while queue and queue[0][0] <= now and limit > 0:
                limit -= 1
                _, action_id = heapq.heappop(queue)
                record = self._records.get(action_id)
                if record is not None and record.release_at <= now:
                    self._forget(record)
                    forgotten += 1
        return forgotten

    def enumerate(
        self,
        principals: frozenset[str],
        roles: frozenset[str],
        statuses: frozenset[str],
        now: datetime,
        limit: int,
        after: tuple[datetime, str] | None = None,
    ) -> list[ActionRecord]:
        # A scan: fine for the one-process store; SQL stores use indexes.
        found = [
            record
            for record in list(self._records.values())
            if record.release_at > now
            and (after is None or (record.start_time, record.action_id) > after)
            and effective_status(record, now) in statuses
            and any(holds_role(record, principals, role) for role in roles)
        ]
        found.sort(key=lambda r: (r.start_time, r.action_id))
        return found[:limit]

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def __len__(self) -> int:
        return len(self._records)

    def _forget(self, record: ActionRecord) -> None:
        del self._records[record.action_id]
        key = (record.creator_id, record.request_id)
        if self._requests.get(key) == record.action_id:
            del self._requests[key]
