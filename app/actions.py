"""The business rules of whattimeisitrightnow: start, status, cancel, resume,
release, enumerate, log.

Pure: the clock and the random source are injected, the store is a parameter,
and the only I/O is through the store. An action's public status is a function
of its stored record and the time, so reading a status never writes.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from types import ModuleType
from typing import Any, Protocol

import isodate
from globus_action_provider_tools.authentication import AuthState
from globus_action_provider_tools.authorization import (
    authorize_action_access_or_404,
    authorize_action_management_or_404,
)
from globus_action_provider_tools.data_types import ActionRequest
from globus_action_provider_tools.errors import AuthenticationError
from globus_action_provider_tools.flask.exceptions import (
    ActionConflict,
    ActionNotFound,
    BadActionRequest,
)

from app.errors import echo
from app.store import ActionRecord, ActionStore, LiveActionLimitReached
from app.store.base import effective_status, holds_role

Clock = Callable[[], datetime]

FAILED_DETAILS = {"message": "We didn't know what time it was.", "error": "WATCHLESS"}
CANCELLED_DETAILS = {"message": "Job cancelled", "error": "CANCELLED"}
# Automatic release: a run request that creates an action sweeps (one store
# call) only if this process has not swept for SWEEP_INTERVAL, or its last
# sweep was full (a backlog). Each process then forgets up to SWEEP_LIMIT due
# actions a second, and as many as it needs while behind, so storage stays
# bounded whatever the rate, on every worker and host alike; the store's
# sweep takes each row once (PostgreSQL: SKIP LOCKED).
SWEEP_LIMIT = 256
SWEEP_INTERVAL = timedelta(seconds=1)
# One enumeration request reads at most this many store pages (of limit + 1
# records) looking for actions the caller may see; then it ends its page early.
ENUMERATE_SCAN_PAGES = 8

_OFFSET_HM = re.compile(r"([+-]?)(\d{1,2}):(\d{2})")


@dataclass(frozen=True)
class ActionRules:
    """The rules every action follows, from the configuration: how long it runs
    (a random delay), how likely it fails, when it is released, and how far
    ahead a deadline may be."""

    min_delay: timedelta
    max_delay: timedelta
    failure_rate: float
    release_after: timedelta
    max_release_after: timedelta
    maximum_deadline: timedelta
    # Live actions one creator may have (None: no limit), and the principals
    # never limited (RATE_LIMIT_EXEMPT).
    max_live_actions: int | None = None
    limit_exempt: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ActionRules:
        rules = cls(
            min_delay=timedelta(seconds=float(config["MIN_DELAY_SECONDS"])),
            max_delay=timedelta(seconds=float(config["MAX_DELAY_SECONDS"])),
            failure_rate=float(config["FAILURE_RATE"]),
            release_after=parse_duration(config["RELEASE_AFTER"]),
            max_release_after=parse_duration(config["MAX_RELEASE_AFTER"]),
            maximum_deadline=parse_duration(config["MAXIMUM_DEADLINE"]),
            max_live_actions=int(config.get("MAX_LIVE_ACTIONS", 0)) or None,
            limit_exempt=tuple(config.get("RATE_LIMIT_EXEMPT", ())),
        )
        if not timedelta(0) <= rules.min_delay <= rules.max_delay:
            raise ValueError("need 0 <= MIN_DELAY_SECONDS <= MAX_DELAY_SECONDS")
        if not 0.0 <= rules.failure_rate <= 1.0:
            raise ValueError("FAILURE_RATE must be between 0 and 1")
        # Else every run request without its own release_after would be a 400.
        if not timedelta(0) <= rules.release_after <= rules.max_release_after:
            raise ValueError("need P0D <= RELEASE_AFTER <= MAX_RELEASE_AFTER")
        if rules.maximum_deadline <= timedelta(0):
            raise ValueError("MAXIMUM_DEADLINE must be a positive duration")
        return rules


def parse_duration(text: str) -> timedelta:
    """An ISO 8601 duration of days and times ("P30D", "PT1H") as a timedelta."""
    value = isodate.parse_duration(text)
    if not isinstance(value, timedelta):  # years or months: no fixed length
        raise ValueError(f"use days, not years or months: {text!r}")
    return value


def format_duration(value: timedelta) -> str:
    """ISO 8601 text of a duration ("P30D")."""
    return isodate.duration_isoformat(value)


def parse_utc_offset(value: float | int | str) -> timezone:
    """A validated utc_offset (see schema.json) as a timezone, to the minute."""
    if isinstance(value, str):
        match = _OFFSET_HM.fullmatch(value)
        if match:
            sign = -1 if match.group(1) == "-" else 1
            minutes = sign * (int(match.group(2)) * 60 + int(match.group(3)))
        else:
            minutes = round(float(value) * 60)
    else:
        minutes = round(value * 60)
    if not -12 * 60 <= minutes <= 14 * 60:
        raise BadActionRequest("Field '$.body.utc_offset': must be from -12 to +14")
    return timezone(timedelta(minutes=minutes))


def fingerprint(request: ActionRequest) -> bytes:
    """A digest of everything in a run request but its request_id.

    Two requests with one request_id start one action only when their
    fingerprints match; otherwise the second is a conflict.
    """
    text = _CANONICAL_JSON.encode(_canonical(request))
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


# The text stored fingerprints were made of: sorted, compact, UTF-8 rather than \u escapes.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _canonical(request: ActionRequest) -> dict[str, Any]:
    """Everything in a run request but its request_id, principals in order."""
    return {
        "body": request.body,
        "label": request.label,
        "monitor_by": sorted(request.monitor_by),
        "manage_by": sorted(request.manage_by),
        "allowed_clients": sorted(request.allowed_clients),
        "deadline": request.deadline.isoformat() if request.deadline else None,
        "release_after": (
            None if request.release_after is None else request.release_after.total_seconds()
        ),
    }


def iso(value: datetime) -> str:
    return value.isoformat()


def public_status(record: ActionRecord, now: datetime) -> dict[str, Any]:
    """The ActionStatus document of ``record`` at ``now`` (spec-shaped JSON).

    The private ``result`` appears only once the action has completed.
    """
    status, display, details = _outcome(record, now)
    document: dict[str, Any] = {
        "action_id": record.action_id,
        "status": status,
        "display_status": display,
        "creator_id": record.creator_id,
        "monitor_by": list(record.monitor_by),
        "manage_by": list(record.manage_by),
        "start_time": iso(record.start_time),
        "release_after": format_duration(record.release_after),
        "details": dict(details),
    }
    if record.label is not None:
        document["label"] = record.label
    if status != "ACTIVE":
        document["completion_time"] = iso(record.completion_time)
    return document


def _outcome(record: ActionRecord, now: datetime) -> tuple[str, str, dict[str, Any]]:
    """(status, display_status, details) of ``record`` at ``now``: the one place
    that decides what each state shows, for the status document and the log."""
    status = effective_status(record, now)
    if record.cancelled_at is not None:
        return status, "CANCELLED", CANCELLED_DETAILS
    if status == "SUCCEEDED":
        return status, status, {"whattimeisit": record.result}
    if status == "FAILED":
        return status, status, FAILED_DETAILS
    return status, status, {"estimated_completion_time": iso(record.estimated_completion_time)}


def is_complete(record: ActionRecord, now: datetime) -> bool:
    return effective_status(record, now) != "ACTIVE"


def utc_now() -> datetime:
    return datetime.now(UTC)


class ActionEvents(Protocol):
    """Told of each action started, cancelled, or released by its manager
    (metrics: app.observability.Metrics)."""

    def started(self) -> None: ...

    def cancelled(self) -> None: ...

    def released(self, outcome: str) -> None:
        """``outcome``: succeeded, failed or cancelled."""


class _NoEvents:
    def started(self) -> None:
        pass

    def cancelled(self) -> None:
        pass

    def released(self, outcome: str) -> None:
        pass


class ActionService:
    """The provider's operations, each checked against the caller's rights."""

    def __init__(
        self,
        store: ActionStore,
        rules: ActionRules,
        clock: Clock = utc_now,
        rng: random.Random | None = None,
        events: ActionEvents | None = None,
    ) -> None:
        self.store = store
        self.events = events or _NoEvents()
        self.rules = rules
        self.clock = clock
        # By default the random module's shared generator: the stdlib reseeds
        # it in every forked worker. (Delays and failures are a simulation.)
        self.rng: random.Random | ModuleType = rng or random
        self._swept_at: datetime | None = None
        self._sweep_full = False

    # --- run -----------------------------------------------------------------
    def run(self, request: ActionRequest, caller: AuthState) -> tuple[dict[str, Any], bool]:
        """Start the action ``request`` asks for, or find the one its
        request_id already started; return its status and whether it is new."""
        now = self.clock()
        record = self._new_record(request, caller, now)
        stored, created = self._create(record, now, caller)
        if created:
            self.events.started()
            self._sweep_if_due(now)
        elif stored.fingerprint != record.fingerprint:
            raise ActionConflict(
                f"request_id {echo(request.request_id, quote=True)} was already used for a "
                "different request"
            )
        return public_status(stored, now), created

    def _create(
        self, record: ActionRecord, now: datetime, caller: AuthState
    ) -> tuple[ActionRecord, bool]:
        """store.create with the live-action limit, which an exempt caller
        passes (its groups are looked up only once it is over the limit)."""
        exempt = self.rules.limit_exempt
        try:
            return self.store.create(record, now, self.rules.max_live_actions)
        except LiveActionLimitReached:
            if exempt and caller.check_authorization(exempt):
                return self.store.create(record, now)
            raise

    def acknowledged(self, request_id: str, caller: AuthState) -> bool:
        """Has the caller's ``request_id`` already started an action that is
        still kept? (Such a run is answered, never refused for load.)"""
        now = self.clock()
        return self.store.find_request(caller.effective_identity, request_id, now) is not None

    def _sweep_if_due(self, now: datetime) -> None:
        last = self._swept_at
        if self._sweep_full or last is None or not last <= now < last + SWEEP_INTERVAL:
            self._swept_at = now
            self._sweep_full = self.store.sweep(now, SWEEP_LIMIT) >= SWEEP_LIMIT

    def _new_record(self, request: ActionRequest, caller: AuthState, now: datetime) -> ActionRecord:
        rules = self.rules
        tz = parse_utc_offset(request.body["utc_offset"])
        # "PT0S" is a zero timedelta, which is falsy: test for None, not truth.
        release_after = request.release_after
        if release_after is None:
            release_after = rules.release_after
        if not timedelta(0) <= release_after <= rules.max_release_after:
            raise BadActionRequest(
                "Field '$.release_after': must be between P0D and "
                f"{format_duration(rules.max_release_after)}"
            )
        delay = self.rng.uniform(
            rules.min_delay.total_seconds(), rules.max_delay.total_seconds()
        )
        estimated = now + timedelta(seconds=delay)
        if request.deadline is not None:
            estimated = min(estimated, self._check_deadline(request.deadline, now))
        succeeds = self.rng.random() >= rules.failure_rate
        # One copy of each identity's text in memory, however many actions name it.
        identities = tuple(sys.intern(i) for i in sorted(caller.identities))
        return ActionRecord(
            action_id=str(uuid.uuid4()),
            creator_id=sys.intern(caller.effective_identity),
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            start_time=now,
            estimated_completion_time=estimated,
            release_after=release_after,
            result=now.astimezone(tz).isoformat() if succeeds else None,
            monitor_by=tuple(sorted(request.monitor_by)) or identities,
            manage_by=tuple(sorted(request.manage_by)) or identities,
            label=request.label,
        )

    def _check_deadline(self, deadline: datetime, now: datetime) -> datetime:
        if deadline.tzinfo is None:
            raise BadActionRequest("Field '$.deadline': must include a UTC offset")
        if deadline <= now:
            raise BadActionRequest("Field '$.deadline': is in the past")
        if deadline > now + self.rules.maximum_deadline:
            raise BadActionRequest(
                "Field '$.deadline': is later than the maximum_deadline "
                f"{format_duration(self.rules.maximum_deadline)}"
            )
        return deadline

    # --- status, cancel, resume, release -------------------------------------
    def status(self, action_id: str, caller: AuthState) -> dict[str, Any]:
        now = self.clock()
        record = self._visible(action_id, caller, now)
        return public_status(record, now)

    def cancel(self, action_id: str, caller: AuthState) -> dict[str, Any]:
        now = self.clock()
        self._manageable(action_id, caller, now)
        cancelled = self.store.cancel(action_id, now)
        if cancelled is None:
            raise ActionConflict(f"Action {echo(action_id)} has already completed")
        self.events.cancelled()
        return public_status(cancelled, now)

    def resume(self, action_id: str, caller: AuthState) -> dict[str, Any]:
        """Resume an INACTIVE action. Ours never become INACTIVE, so a running
        action is returned unchanged; a completed one is a conflict, as for cancel."""
        now = self.clock()
        record = self._manageable(action_id, caller, now)
        if is_complete(record, now):
            raise ActionConflict(f"Action {echo(action_id)} has already completed")
        return public_status(record, now)

    def release(self, action_id: str, caller: AuthState) -> dict[str, Any]:
        now = self.clock()
        record = self._manageable(action_id, caller, now)
        if not is_complete(record, now):
            raise ActionConflict(
                f"Action {echo(action_id)} is still running; cancel it before releasing it"
            )
        if not self.store.release(action_id):
            raise _not_found(action_id)
        final = public_status(record, now)
        self.events.released(
            "cancelled" if final["display_status"] == "CANCELLED" else final["status"].lower()
        )
        return final

    # --- enumerate, log ---------------------------------------------------------
    def enumerate(
        self,
        caller: AuthState,
        roles: frozenset[str],
        statuses: frozenset[str],
        limit: int,
        after: tuple[datetime, str] | None = None,
    ) -> tuple[list[dict[str, Any]], tuple[datetime, str] | None]:
        """The caller's actions in which it holds one of ``roles`` and whose
        status is one of ``statuses``, at most ``limit``, ordered by (start_time,
        action_id) after ``after``; and the key to continue after, or None at
        the end.

        Only actions the caller may see (creator or monitor_by) are listed: a
        manage_by-only action is skipped. The caller's groups are looked up
        (a Groups call) only when ``roles`` goes beyond creator_id, which names
        an identity. The work per call is bounded: after ENUMERATE_SCAN_PAGES
        store pages the page ends early, maybe short or empty, with a key.
        """
        now = self.clock()
        creator_only = roles == {"creator_id"}
        principals = caller.identities if creator_only else caller.principals
        found: list[ActionRecord] = []
        key = after
        for _ in range(ENUMERATE_SCAN_PAGES):
            batch = self.store.enumerate(principals, roles, statuses, now, limit + 1, key)
            for record in batch:
                key = (record.start_time, record.action_id)
                if creator_only or _may_see(record, principals):
                    found.append(record)
                    if len(found) > limit:
                        last = found[limit - 1]
                        page = [public_status(r, now) for r in found[:limit]]
                        return page, (last.start_time, last.action_id)
            if len(batch) <= limit:
                return [public_status(r, now) for r in found], None
        return [public_status(r, now) for r in found], key

    def log(self, action_id: str, caller: AuthState) -> list[dict[str, Any]]:
        """The action's lifecycle events so far, oldest first, derived from its
        record: started, then succeeded, failed or cancelled."""
        now = self.clock()
        record = self._visible(action_id, caller, now)
        entries = [
            {
                "time": iso(record.start_time),
                "code": "STARTED",
                "description": "The action started",
                "details": {
                    "estimated_completion_time": iso(record.estimated_completion_time)
                },
            }
        ]
        status, display, details = _outcome(record, now)
        if status == "ACTIVE":
            return entries
        code = "CANCELLED" if display == "CANCELLED" else status
        entries.append(
            {
                "time": iso(record.completion_time),
                "code": code,
                "description": _LOG_DESCRIPTIONS[code],
                "details": dict(details),
            }
        )
        return entries

    def _live(self, action_id: str, now: datetime) -> ActionRecord:
        record = self.store.get(action_id)
        if record is None or record.release_at <= now:
            raise _not_found(action_id)
        return record

    def _visible(self, action_id: str, caller: AuthState, now: datetime) -> ActionRecord:
        record = self._live(action_id, now)
        _authorize(authorize_action_access_or_404, record, caller)
        return record

    def _manageable(self, action_id: str, caller: AuthState, now: datetime) -> ActionRecord:
        record = self._live(action_id, now)
        _authorize(authorize_action_management_or_404, record, caller)
        return record


def _authorize(
    check: Callable[[Any, AuthState], None], record: ActionRecord, caller: AuthState
) -> None:
    """Run one of the library's authorize_*_or_404 checks on a record.

    The library checks reads ``creator_id``, ``monitor_by``, ``manage_by`` and
    ``action_id``, which a record has, so no ActionStatus model is built.
    """
    try:
        check(record, caller)
    except AuthenticationError:
        raise _not_found(record.action_id) from None


_LOG_DESCRIPTIONS = {
    "SUCCEEDED": "The action succeeded",
    "FAILED": "The action failed",
    "CANCELLED": "The action was cancelled",
}


def _may_see(record: ActionRecord, principals: frozenset[str]) -> bool:
    """The library's view rule (creator or monitor_by), on a record."""
    return holds_role(record, principals, "creator_id") or holds_role(
        record, principals, "monitor_by"
    )


def _not_found(action_id: str) -> ActionNotFound:
    return ActionNotFound(f"No action with id {echo(action_id)}")
