"""Request rates per caller: how often one identity may run, and read.

Two rates, counted per effective identity (``g.auth_state.effective_identity``)
with the `limits` library's sliding-window counter:

- ``RUN_RATE_LIMIT``: run requests (a view that ``takes_run_request``:
  ``POST /run``, ``POST /actions``);
- ``GET_RATE_LIMIT``: every other GET (or HEAD) that needs a token: status,
  enumerate, log and introspection, on both paths of each.

Cancel, resume and release are never counted: they free room or change
nothing, and a caller must always be able to stop what it started.

The check (``check_rate``) is the last step of app.hooks' ``check_request``,
so the token has been checked (``g.auth_state``) and a run request's body
validated (``g.action_request``). A caller over a rate gets
429 ``TooManyRequests`` with ``Retry-After``, unless

- it is in ``RATE_LIMIT_EXEMPT`` (asked only then: a group there costs a
  Groups lookup for callers already over a rate, never for the others), or
- it is repeating a run whose request_id was already acknowledged: Globus
  Flows retries a run it is unsure of, and the answer (200, the same action)
  must not depend on load. Only a new action is refused.

Responses of limited routes carry ``RateLimit-Policy`` (draft-ietf-httpapi-
ratelimit-headers: ``"run";q=600;w=60``); a 429 also carries ``RateLimit``
(``"run";r=0;t=17``). Served responses do not: that would cost a second
storage round trip a request, and the draft lets a server send it only when
it matters ("Performance Considerations").

Storage (``RATE_LIMIT_STORAGE_URL``): memory:// counts in this process only
(refused with several worker processes: ``refuse_per_process_rate_limits``);
Redis is shared by every worker and host. If Redis stops answering, requests
are served without rate limits (fail open), because the rates protect
latency, not storage (the live-action limit in the store bounds that), and
refusing or failing every request because a counter is away would turn a
Redis outage into a provider outage. A dead Redis must not cost every
request a timeout either: after a failure this process skips Redis for
``STORAGE_RETRY_SECONDS`` (those requests are counted as unchecked), socket
timeouts are short, and the WARNING is logged at most once every
``WARN_EVERY_SECONDS``. Counts kept by a Redis that restarts without
persistence start again from zero.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import limits
import redis
from flask import Flask, Request, Response, after_this_request, g
from globus_action_provider_tools.flask.exceptions import ActionProviderToolsException
from limits.errors import StorageError
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter
from redis.backoff import NoBackoff
from redis.retry import Retry
from werkzeug.exceptions import TooManyRequests as _TooManyRequests

log = logging.getLogger(__name__)

KEY_PREFIX = "whattimeisitrightnow:rate"  # Redis keys: a shared Redis may hold others'
SOCKET_TIMEOUT_SECONDS = 0.25  # a Redis answers in a millisecond; more is an outage
STORAGE_RETRY_SECONDS = 1.0
WARN_EVERY_SECONDS = 60.0
# Errors of a storage that did not answer (or answered an error such as OOM).
STORAGE_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, StorageError, OSError)

RUN, GET = "run", "get"
REASONS = {RUN: "run_rate", GET: "get_rate"}  # the metrics' label of each scope
_SETTING = {RUN: "RUN_RATE_LIMIT", GET: "GET_RATE_LIMIT"}


class RateLimitSetupError(ValueError):
    """The rate limits cannot work as configured (one line, at start)."""


class RateLimitObserver(Protocol):
    """Told of each refusal and storage failure (app.observability.Metrics)."""

    def rate_limited(self, reason: str) -> None: ...

    def rate_limit_storage_error(self) -> None: ...

    def rate_limit_unchecked(self) -> None: ...


def parse_rates(text: str) -> tuple[limits.RateLimitItem, ...]:
    """The rates of a setting ("20/second;600/minute"); () for "" (no limit).
    ValueError saying what is wrong."""
    if not text.strip():
        return ()
    try:
        items = tuple(limits.parse_many(text))
    except ValueError:
        raise ValueError("not a rate like 20/second;600/minute") from None
    if any(item.amount < 1 for item in items):
        raise ValueError("a rate allows at least 1 request")
    windows = [item.get_expiry() for item in items]
    if len(set(windows)) != len(windows):
        raise ValueError("two rates over the same window")
    return items


@dataclass(frozen=True)
class Policy:
    """One scope's rates, and how they are named in headers and metrics."""

    scope: str  # "run" or "get": part of the storage key
    items: tuple[limits.RateLimitItem, ...]

    @property
    def reason(self) -> str:
        return REASONS[self.scope]

    def name(self, item: limits.RateLimitItem) -> str:
        """The policy name in the RateLimit headers: the scope, with the window
        when there are several rates."""
        if len(self.items) == 1:
            return self.scope
        return f"{self.scope}-{item.get_expiry()}s"

    @functools.cached_property
    def header(self) -> str:
        """``RateLimit-Policy``: ``"run-1s";q=20;w=1, "run-60s";q=600;w=60``."""
        return ", ".join(
            f'"{self.name(item)}";q={item.amount};w={item.get_expiry()}' for item in self.items
        )

    def describe(self, item: limits.RateLimitItem) -> str:
        unit = item.GRANULARITY.name
        per = f"{item.multiples} {unit}s" if item.multiples > 1 else f"a {unit}"
        return f"at most {item.amount} {per}"


class TooManyRequests(ActionProviderToolsException, _TooManyRequests):
    """429: the caller is over a rate; its headers say when to come back."""

    def __init__(self, description: str, headers: list[tuple[str, str]]) -> None:
        super().__init__(description)
        self._headers = headers

    def get_headers(self, *args: object) -> list[tuple[str, str]]:
        return [*super().get_headers(*args), *self._headers]


class ProcessStorage(MemoryStorage):
    """limits' in-process storage (memory://), without its expiry timer.

    MemoryStorage starts a timer thread 10 ms after every increment to drop
    expired counters: under load a new thread up to 100 times a second, each
    paid for by a request (a fast path: bench/README.md#rate-limits).
    Here an expired counter is dropped when it is next read (MemoryStorage.get
    does that), and all expired ones at most once a minute by the request that
    comes due, so the counters of callers who never return do not pile up."""

    SWEEP_EVERY_SECONDS = 60.0

    def __init__(self) -> None:
        super().__init__()
        self.timer.cancel()  # the one MemoryStorage.__init__ starts
        self._next_sweep = time.time() + self.SWEEP_EVERY_SECONDS
        self._sweeping = threading.Lock()

    def _MemoryStorage__schedule_expiry(self) -> None:
        """MemoryStorage's private hook, called before each write: here a
        sweep when one is due, instead of starting a timer thread."""
        now = time.time()
        if now < self._next_sweep or not self._sweeping.acquire(blocking=False):
            return
        try:
            self._next_sweep = now + self.SWEEP_EVERY_SECONDS
            for key, expires in list(self.expirations.items()):
                if expires <= now:
                    self.get(key)  # drops it
        finally:
            self._sweeping.release()


def open_storage(url: str) -> Storage:
    """The `limits` storage ``url`` names. Redis: short timeouts (the URL may
    set its own, ``?socket_timeout=0.5``) and one immediate retry, which
    replaces a pooled connection that a restarted Redis has closed; redis-py's
    default retries three times with back-off, seconds on a dead Redis."""
    if url.lower().startswith("memory"):
        return ProcessStorage()
    return storage_from_string(
        url,
        key_prefix=KEY_PREFIX,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 1),
    )


def describe_storage(url: str) -> str:
    """The storage URL without its password (for messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}{port}").geturl()


class RateLimiter:
    """Counts hits per (scope, identity) in the storage; serves without
    limits while the storage does not answer (see the module's docstring)."""

    def __init__(
        self,
        storage: Storage,
        observer: RateLimitObserver,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._storage = storage
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._observer = observer
        self._clock = clock
        self._skip_until = -math.inf
        self._warn_after = -math.inf
        self._failing = False
        self._lock = threading.Lock()  # the outage state; never held during I/O

    def hit(self, policy: Policy, identity: str) -> limits.RateLimitItem | None:
        """Count one request; the rate it exceeds, or None if it may be served
        (under every rate, or unchecked: the storage is not answering)."""
        if self._clock() < self._skip_until:
            self._observer.rate_limit_unchecked()
            return None
        try:
            for item in policy.items:
                if not self._limiter.hit(item, policy.scope, identity):
                    return item
        except STORAGE_ERRORS as error:
            self._failed(error)
            return None
        if self._failing:
            self._recovered()
        return None

    def status(self, policy: Policy, identity: str) -> list[tuple[str, int, int]]:
        """(policy name, remaining, whole seconds until more is allowed) of
        each rate; [] if the storage does not answer."""
        now = time.time()
        try:
            stats = [
                self._limiter.get_window_stats(item, policy.scope, identity)
                for item in policy.items
            ]
        except STORAGE_ERRORS as error:
            self._failed(error, unchecked=False)  # the request is refused all the same
            return []
        return [
            (policy.name(item), s.remaining, max(1, math.ceil(s.reset_time - now)))
            for item, s in zip(policy.items, stats, strict=True)
        ]

    def _failed(self, error: Exception, unchecked: bool = True) -> None:
        self._observer.rate_limit_storage_error()
        if unchecked:
            self._observer.rate_limit_unchecked()
        now = self._clock()
        with self._lock:
            self._skip_until = now + STORAGE_RETRY_SECONDS
            self._failing = True
            warn = now >= self._warn_after
            if warn:
                self._warn_after = now + WARN_EVERY_SECONDS
        if warn:
            log.warning(
                "rate limits not enforced: the storage at RATE_LIMIT_STORAGE_URL did not "
                "answer (%s); serving without them, trying again every %g s",
                type(error).__name__, STORAGE_RETRY_SECONDS,
            )

    def _recovered(self) -> None:
        with self._lock:
            was_failing, self._failing = self._failing, False
            self._warn_after = -math.inf
        if was_failing:
            log.warning("rate limits enforced again: RATE_LIMIT_STORAGE_URL answers")


@dataclass(frozen=True)
class RateLimits:
    """What the hook needs: the limiter, each scope's policy, the exempt list."""

    limiter: RateLimiter
    policies: dict[str, Policy]
    exempt: tuple[str, ...]
    observer: RateLimitObserver


def policies_from_config(config: dict[str, Any]) -> dict[str, Policy]:
    """The scopes that have a rate (none: no limits at all)."""
    found = {}
    for scope, key in _SETTING.items():
        items = parse_rates(str(config[key]))
        if items:
            found[scope] = Policy(scope, items)
    return found


def init_app(app: Flask, observer: RateLimitObserver) -> None:
    """The rates of this configuration, for ``check_rate`` (none: no check)."""
    policies = policies_from_config(app.config)
    if not policies:
        return
    storage = open_storage(app.config["RATE_LIMIT_STORAGE_URL"])
    app.extensions["rate_limits"] = RateLimits(
        RateLimiter(storage, observer), policies, tuple(app.config["RATE_LIMIT_EXEMPT"]), observer
    )


def check_rate(app: Flask, req: Request, view: Any) -> None:
    """Count this request against its caller's rate; 429 if over (see the
    module's docstring for who is let through). A step of app.hooks'
    check_request, once the token is checked and a run's body validated."""
    rates: RateLimits | None = app.extensions.get("rate_limits")
    ctx_g = g._get_current_object()  # type: ignore[attr-defined]
    caller = ctx_g.get("auth_state")
    if rates is None or caller is None:  # no rates; a public view or OPTIONS
        return
    if req.method == "POST" and getattr(view, "takes_run_request", False):
        scope = RUN
    elif req.method in ("GET", "HEAD"):
        scope = GET
    else:
        return  # cancel, resume, release
    policy = rates.policies.get(scope)
    if policy is None:
        return
    ctx_g.rate_limit_policy = policy
    after_this_request(_add_policy_header)
    identity = caller.effective_identity
    refused = rates.limiter.hit(policy, identity)
    if refused is None:
        return
    if rates.exempt and caller.check_authorization(rates.exempt):
        return
    if scope == RUN and app.extensions["actions"].acknowledged(
        ctx_g.action_request.request_id, caller
    ):
        return
    rates.observer.rate_limited(policy.reason)
    raise _too_many(policy, refused, rates.limiter.status(policy, identity))


def _too_many(
    policy: Policy, refused: limits.RateLimitItem, status: list[tuple[str, int, int]]
) -> TooManyRequests:
    """The 429, its Retry-After no earlier than any exhausted rate's reset
    (as the draft asks when both are sent)."""
    waits = [reset for _, remaining, reset in status if remaining <= 0]
    # Storage gone since the hit: the average spacing the refused rate allows.
    retry_after = max(waits, default=max(1, math.ceil(refused.get_expiry() / refused.amount)))
    headers = [("Retry-After", str(retry_after))]
    if status:
        headers.append(
            ("RateLimit", ", ".join(f'"{name}";r={r};t={t}' for name, r, t in status))
        )
    what = "run requests" if policy.scope == RUN else "requests"
    return TooManyRequests(
        f"Too many {what} from you ({policy.describe(refused)}); "
        f"try again in {retry_after} s.",
        headers,
    )


def _add_policy_header(response: Response) -> Response:
    response.headers["RateLimit-Policy"] = g.rate_limit_policy.header
    return response


# --- start-up checks (app.startup and the launcher) ---------------------------
def check_storage_reachable(config: dict[str, Any]) -> None:
    """At start: a Redis that does not answer is one line naming the setting."""
    url = str(config["RATE_LIMIT_STORAGE_URL"])
    if not policies_from_config(config) or url.lower().startswith("memory"):
        return
    try:
        storage = open_storage(url)
        storage.get_connection().ping()  # type: ignore[attr-defined]
    except (*STORAGE_ERRORS, ValueError) as error:
        reason = (str(error).splitlines() or [""])[0][:200]
        raise RateLimitSetupError(
            f"RATE_LIMIT_STORAGE_URL={describe_storage(url)!r} does not answer "
            f"({type(error).__name__}: {reason}); start Redis there or fix the URL "
            '(or set RUN_RATE_LIMIT and GET_RATE_LIMIT to "" to serve without rate limits)'
        ) from None


def refuse_per_process_rate_limits(config: dict[str, Any], workers: int) -> None:
    """Per-process counts with several processes would let each caller have
    the rate once per worker: refused at start (the launcher calls this)."""
    url = str(config["RATE_LIMIT_STORAGE_URL"])
    if workers > 1 and url.lower().startswith("memory") and policies_from_config(config):
        raise RateLimitSetupError(
            f"{workers} worker processes with RATE_LIMIT_STORAGE_URL={url!r}: each would "
            "count the rates alone, allowing each caller the rate once per worker. "
            "Share the counts in Redis (FLASK_RATE_LIMIT_STORAGE_URL=redis://host:6379/0), "
            'serve one process, or set RUN_RATE_LIMIT and GET_RATE_LIMIT to "" (no rate limits)'
        )
