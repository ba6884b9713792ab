"""The default store: dicts in this process, guarded by one lock, holding at
most ``capacity`` actions (MEMORY_STORE_CAPACITY).

Besides the records and the request index it keeps two small indexes:

- by principal: each principal of an action (its creator and every
  monitor_by and manage_by entry) -> the action's id, or a set of ids once
  it has several. Enumerate reads only the entries of the caller's
  principals, never other callers' actions. Most principals name one action
  (a bare id costs one dict slot; a set, ~200 bytes, only when needed).
- by creator: [how many actions it has stored, no later than the earliest
  release_at among them], so that the live-action limit is counted in O(1)
  until one of the creator's actions may have expired.

When full, a new action is refused (StoreFull) after forgetting what is due:
nothing live is dropped to make room.
"""

from __future__ import annotations

import dataclasses
import heapq
import threading
from datetime import datetime

from app.store.base import (
    ActionRecord,
    LiveActionLimitReached,
    StoreFull,
    effective_status,
    holds_role,
)

# config.py's MEMORY_STORE_CAPACITY (it documents the figures behind it).
DEFAULT_CAPACITY = 50_000
# A full store forgets at most this many due actions in one create (the lock
# is held meanwhile), as one sweep of app.actions does.
FULL_SWEEP_LIMIT = 256


class MemoryStore:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("the memory store's capacity must be at least 1 action")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._records: dict[str, ActionRecord] = {}
        self._requests: dict[tuple[str, str], str] = {}
        # (release_at, action_id); entries go stale when an action is cancelled
        # or released, and are checked against the record when they come due.
        self._release_queue: list[tuple[datetime, str]] = []
        self._by_principal: dict[str, str | set[str]] = {}
        self._by_creator: dict[str, list] = {}  # creator -> [stored, earliest release_at]

    def create(
        self, record: ActionRecord, now: datetime, live_limit: int | None = None
    ) -> tuple[ActionRecord, bool]:
        key = (record.creator_id, record.request_id)
        with self._lock:
            existing_id = self._requests.get(key)
            if existing_id is not None:
                existing = self._records[existing_id]
                if existing.release_at > now:
                    return existing, False
                self._forget(existing)
            if live_limit is not None and self._at_limit(record.creator_id, now, live_limit):
                raise LiveActionLimitReached(live_limit)
            if len(self._records) >= self.capacity:
                self._sweep(now, FULL_SWEEP_LIMIT)
                if len(self._records) >= self.capacity:
                    raise StoreFull(self.capacity)
            self._add(record)
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
            counts = self._by_creator[cancelled.creator_id]
            counts[1] = min(counts[1], cancelled.release_at)
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
        with self._lock:
            return self._sweep(now, limit)

    def enumerate(
        self,
        principals: frozenset[str],
        roles: frozenset[str],
        statuses: frozenset[str],
        now: datetime,
        limit: int,
        after: tuple[datetime, str] | None = None,
    ) -> list[ActionRecord]:
        with self._lock:
            ids: set[str] = set()
            for principal in principals:
                ids.update(self._ids_of(principal))
            candidates = [self._records[action_id] for action_id in ids]
        found = (
            record
            for record in candidates
            if record.release_at > now
            and (after is None or (record.start_time, record.action_id) > after)
            and effective_status(record, now) in statuses
            and any(holds_role(record, principals, role) for role in roles)
        )
        return heapq.nsmallest(max(0, limit), found, key=lambda r: (r.start_time, r.action_id))

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def __len__(self) -> int:
        return len(self._records)

    # --- under the lock -------------------------------------------------------
    def _add(self, record: ActionRecord) -> None:
        action_id = record.action_id
        self._records[action_id] = record
        self._requests[(record.creator_id, record.request_id)] = action_id
        heapq.heappush(self._release_queue, (record.release_at, action_id))
        index = self._by_principal
        for principal in _principals(record):
            found = index.get(principal)
            if found is None:
                index[principal] = action_id
            elif isinstance(found, str):
                index[principal] = {found, action_id}
            else:
                found.add(action_id)
        counts = self._by_creator.get(record.creator_id)
        if counts is None:
            self._by_creator[record.creator_id] = [1, record.release_at]
        else:
            counts[0] += 1
            counts[1] = min(counts[1], record.release_at)

    def _forget(self, record: ActionRecord) -> None:
        action_id = record.action_id
        del self._records[action_id]
        key = (record.creator_id, record.request_id)
        if self._requests.get(key) == action_id:
            del self._requests[key]
        index = self._by_principal
        for principal in _principals(record):
            found = index[principal]
            if isinstance(found, str):
                del index[principal]
            else:
                found.discard(action_id)
                if len(found) == 1:  # back to a bare id: a set never shrinks its table
                    index[principal] = next(iter(found))
        counts = self._by_creator[record.creator_id]
        counts[0] -= 1
        if not counts[0]:
            del self._by_creator[record.creator_id]

    def _ids_of(self, principal: str) -> tuple[str, ...] | set[str]:
        found = self._by_principal.get(principal)
        if found is None:
            return ()
        return (found,) if isinstance(found, str) else found

    def _at_limit(self, creator: str, now: datetime, limit: int) -> bool:
        """Has ``creator`` ``limit`` live actions at ``now``? Its actions are
        looked at only when it has stored that many and one of them may have
        expired: the expired ones are forgotten (they count as gone) and the
        earliest release_at of the others noted, so the next call is O(1)
        again until then."""
        counts = self._by_creator.get(creator)
        if counts is None or counts[0] < limit:
            return False
        if counts[1] > now:
            return True
        mine = [self._records[i] for i in self._ids_of(creator)]
        mine = [record for record in mine if record.creator_id == creator]
        for record in mine:
            if record.release_at <= now:
                self._forget(record)
        live = [record.release_at for record in mine if record.release_at > now]
        if live:
            self._by_creator[creator][1] = min(live)
        return len(live) >= limit

    def _sweep(self, now: datetime, limit: int) -> int:
        forgotten = 0
        queue = self._release_queue
        while queue and queue[0][0] <= now and limit > 0:
            limit -= 1
            _, action_id = heapq.heappop(queue)
            record = self._records.get(action_id)
            if record is not None and record.release_at <= now:
                self._forget(record)
                forgotten += 1
        return forgotten


def _principals(record: ActionRecord) -> set[str]:
    """Every principal holding a role in ``record``, once each."""
    return {record.creator_id, *record.monitor_by, *record.manage_by}
