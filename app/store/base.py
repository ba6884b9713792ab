"""The ActionStore contract shared by every backend.

A store keeps two things: the request index ``(creator_id, request_id) ->
action_id`` and the records ``action_id -> ActionRecord``. It knows nothing of
HTTP or of Globus; the business rules in ``app.actions`` decide what the public
status of a record is at a given time.

Every method is atomic with respect to every other call on the same store,
across threads (memory) and across processes and hosts (SQL).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Protocol


@dataclasses.dataclass(slots=True, frozen=True)
class ActionRecord:
    """Everything the provider keeps about one action.

    The public status (SUCCEEDED/FAILED/ACTIVE, details, completion_time) is
    derived from these fields and the clock by ``app.actions``; ``result`` is
    private: the precomputed answer, or None for the WATCHLESS failure, and is
    never rendered before ``estimated_completion_time``.
    """

    action_id: str
    creator_id: str
    request_id: str
    fingerprint: bytes  # digest of the run request, for request_id dedup
    start_time: datetime
    estimated_completion_time: datetime
    release_after: timedelta
    result: str | None
    monitor_by: tuple[str, ...] = ()
    manage_by: tuple[str, ...] = ()
    label: str | None = None
    cancelled_at: datetime | None = None

    @property
    def completion_time(self) -> datetime:
        """When the action completes (or completed): cancel time or its estimate."""
        return self.cancelled_at or self.estimated_completion_time

    @property
    def release_at(self) -> datetime:
        """When the action is released automatically."""
        return self.completion_time + self.release_after


class StoreError(RuntimeError):
    """A store could not do its work (see the subclasses)."""


class LiveActionLimitReached(Exception):
    """``create`` refused a new action: its creator already has ``limit`` live
    actions (a 429 for the caller; not a failure of the store)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the creator has {limit} live actions, the most allowed")
        self.limit = limit


class StoreFull(Exception):
    """``create`` refused a new action: the memory store holds its capacity
    (a 503: the provider is full; nothing stored is dropped to make room)."""

    def __init__(self, capacity: int) -> None:
        super().__init__(f"the store holds {capacity} actions, its capacity")
        self.capacity = capacity


class StoreUnavailable(StoreError):
    """The backing database could not be reached or did not answer in time.

    Raised by the SQL stores instead of driver errors, so that the service can
    answer 503 (retry later) rather than 500.
    """


ROLES = ("creator_id", "monitor_by", "manage_by")
STATUSES = ("ACTIVE", "INACTIVE", "SUCCEEDED", "FAILED")


def effective_status(record: ActionRecord, now: datetime) -> str:
    """The lifecycle status of ``record`` at ``now`` (INACTIVE never happens here)."""
    if record.cancelled_at is not None:
        return "FAILED"
    if record.estimated_completion_time > now:
        return "ACTIVE"
    return "SUCCEEDED" if record.result is not None else "FAILED"


def holds_role(record: ActionRecord, principals: frozenset[str], role: str) -> bool:
    if role == "creator_id":
        return record.creator_id in principals
    return not principals.isdisjoint(getattr(record, role))


class ActionStore(Protocol):
    def create(
        self, record: ActionRecord, now: datetime, live_limit: int | None = None
    ) -> tuple[ActionRecord, bool]:
        """Store ``record`` unless its (creator_id, request_id) already names a live
        action; return the stored record and whether this call created it.

        A record whose ``release_at`` is not after ``now`` counts as gone.

        ``live_limit``: refuse (LiveActionLimitReached) a new action whose
        creator already has that many live actions (released and expired ones
        do not count); None: no limit. The request_id is looked up first, so
        a repeat of a stored request is answered whatever the count. The
        count and the insert are one atomic step (see each store), so
        concurrent creates of one creator never pass the limit together. The
        memory store may also refuse with StoreFull (its capacity).
        """
        ...

    def get(self, action_id: str) -> ActionRecord | None:
        """The record, or None. Callers check ``release_at`` themselves."""
        ...

    def find_request(self, creator_id: str, request_id: str, now: datetime) -> ActionRecord | None:
        """The live action (``release_at`` after ``now``) that ``creator_id``
        started with ``request_id``, or None."""
        ...

    def cancel(self, action_id: str, now: datetime) -> ActionRecord | None:
        """Compare-and-set: mark the action cancelled at ``now`` if it is neither
        cancelled nor past its estimated completion. Return the new record, or
        None when this call did not win (already cancelled, completed or gone)."""
        ...

    def release(self, action_id: str) -> bool:
        """Forget the action and its request_id; True only for the call that did."""
        ...

    def sweep(self, now: datetime, limit: int) -> int:
        """Forget at most ``limit`` actions whose ``release_at`` is not after
        ``now``; return how many were forgotten."""
        ...

    def enumerate(
        self,
        principals: frozenset[str],
        roles: frozenset[str],
        statuses: frozenset[str],
        now: datetime,
        limit: int,
        after: tuple[datetime, str] | None = None,
    ) -> list[ActionRecord]:
        """Live actions (``release_at`` after ``now``) in which one of
        ``principals`` holds one of ``roles`` (a subset of ROLES) and whose
        ``effective_status`` at ``now`` is in ``statuses``; ordered by
        (start_time, action_id), strictly after ``after``; at most ``limit``."""
        ...

    def ping(self) -> bool:
        """True when the store answers (health checks)."""
        ...

    def close(self) -> None: ...
