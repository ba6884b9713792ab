"""Following an action until it completes: when to poll, and what to retry.

Polls back off from 0.5 s to at most 10 s, but never sleep far past the
provider's estimated_completion_time; once that time has passed, polling
starts short again. Transient failures (429, 502, 503, 504, network errors)
are retried, honouring Retry-After, up to MAX_TRANSIENT_FAILURES in a row;
then the waiter gives up (GaveUp).
Interrupting (KeyboardInterrupt) is left to the caller: waiting never cancels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import globus_sdk

TERMINAL = frozenset({"SUCCEEDED", "FAILED"})
# INACTIVE waits for someone to act (spec): no use polling on.
STOPS = TERMINAL | {"INACTIVE"}
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
FIRST_DELAY = 0.5
MAX_DELAY = 10.0
MAX_RETRY_AFTER = 60.0
MAX_TRANSIENT_FAILURES = 8


class Progress(Protocol):
    def update(self, status: dict[str, Any]) -> None: ...
    def sleep(self, seconds: float) -> None: ...


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def estimated_completion(status: dict[str, Any]) -> datetime | None:
    details = status.get("details")
    if not isinstance(details, dict):
        return None
    return parse_time(details.get("estimated_completion_time"))


def retry_after_seconds(error: globus_sdk.GlobusAPIError) -> float | None:
    """Retry-After in seconds (only its delta-seconds form), capped."""
    value = error.headers.get("Retry-After")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    if seconds is None or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER)


@dataclass
class PollPolicy:
    """How long to sleep before the next poll. Pure: time is passed in."""

    polls: int = 0
    polls_after_eta: int = 0

    def next_delay(self, *, remaining: float | None, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return retry_after
        if remaining is not None and remaining <= 0:
            delay = min(FIRST_DELAY * 2**self.polls_after_eta, MAX_DELAY)
            self.polls_after_eta += 1
            return delay
        delay = min(FIRST_DELAY * 1.5**self.polls, MAX_DELAY)
        self.polls += 1
        if remaining is not None:
            # Wake up just after the estimated time rather than up to MAX_DELAY later.
            delay = min(delay, remaining + 0.1)
        return delay


def is_transient(error: Exception) -> bool:
    if isinstance(error, globus_sdk.NetworkError):
        return True
    return isinstance(error, globus_sdk.GlobusAPIError) and error.http_status in TRANSIENT_STATUSES


class GaveUp(Exception):
    """Polling stopped after ``attempts`` transient failures in a row; ``error`` is the last."""

    def __init__(self, error: globus_sdk.GlobusAPIError | globus_sdk.NetworkError, attempts: int):
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts


@dataclass
class Waiter:
    """Poll ``fetch`` until the action is SUCCEEDED, FAILED or INACTIVE."""

    fetch: Callable[[], dict[str, Any]]
    progress: Progress
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    policy: PollPolicy = field(default_factory=PollPolicy)

    def wait(self, status: dict[str, Any]) -> dict[str, Any]:
        """The final status, starting from ``status`` (already fetched)."""
        last = status
        current: dict[str, Any] | None = status
        failures = 0
        retry_after: float | None = None
        while True:
            if current is not None:
                last = current
                self.progress.update(current)
                if current.get("status") in STOPS:
                    return current
            eta = estimated_completion(last)
            remaining = (eta - self.now()).total_seconds() if eta else None
            delay = self.policy.next_delay(remaining=remaining, retry_after=retry_after)
            self.progress.sleep(delay)
            retry_after = None
            try:
                current = self.fetch()
                failures = 0
            except (globus_sdk.GlobusAPIError, globus_sdk.NetworkError) as error:
                current = None
                failures += 1
                if not is_transient(error):
                    raise
                if failures >= MAX_TRANSIENT_FAILURES:
                    raise GaveUp(error, failures) from error
                if isinstance(error, globus_sdk.GlobusAPIError):
                    retry_after = retry_after_seconds(error)
