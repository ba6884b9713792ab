"""Request ids, the request log line, Prometheus metrics, /healthz and /metrics.

Every request gets an id (a valid incoming ``X-Request-ID``, else a new one),
returned in the response's ``X-Request-ID`` and logged with the request's
method, path (no query string), route, status, latency, action_id and the
caller's identity where known (unless ``LOG_REQUESTS`` is off). Never a
token, a secret or a body.

Metrics live in a registry of the app's own; with ``PROMETHEUS_MULTIPROC_DIR``
set (``python -m app`` sets it) every worker process writes its values there
and /metrics adds up all workers'.

Action counters: ``actions_started_total`` (a run that created an action),
``actions_cancelled_total`` (a cancel that won), ``actions_released_total
{outcome=succeeded|failed|cancelled}`` (an explicit release; its final status
is the outcome). Statuses are derived on read, so success and failure are
counted when they are final and known: at release, which Globus Flows does for
every action it runs. Actions released automatically after release_after are
not counted.
"""

from __future__ import annotations

import glob
import logging
import os
import random
import re
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from werkzeug.exceptions import ServiceUnavailable

from app.hooks import View, public
from app.logs import clip
from app.serving import draining
from app.store import StoreUnavailable

log = logging.getLogger("app.request")

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:=+/-]{1,128}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

class _SettledMultiProcessCollector(MultiProcessCollector):
    """prometheus_client's collector, skipping files still empty: a starting
    worker creates its file, then sizes it, and reading it between the two
    fails (seen when a worker is replaced while /metrics is scraped)."""

    def collect(self):  # type: ignore[no-untyped-def]
        files = [
            path for path in glob.glob(os.path.join(self._path, "*.db"))
            if _size(path) > 0
        ]
        return self.merge(files, accumulate=True)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:  # gone meanwhile
        return 0


class Metrics:
    """The provider's Prometheus metrics; also the auth layer's AuthObserver
    and the action service's ActionEvents."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "http_requests", "HTTP requests answered.", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "http_request_duration_seconds", "Time to answer an HTTP request.",
            ["route", "method", "status"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.started_total = Counter("actions_started", "Actions started.", registry=r)
        self.cancelled_total = Counter("actions_cancelled", "Actions cancelled.", registry=r)
        self.released_total = Counter(
            "actions_released", "Actions released by their manager, by final outcome.",
            ["outcome"], registry=r,
        )
        self.introspections = Counter(
            "auth_introspections", "Token introspections asked of Globus Auth, by outcome.",
            ["outcome"], registry=r,
        )
        self.cache_lookups = Counter(
            "auth_cache_lookups", "Lookups in the auth caches, by cache and result.",
            ["cache", "result"], registry=r,
        )
        # Kept for dashboards that read it: the same as auth_cache_lookups{cache="introspect"}.
        self.introspect_cache_lookups = Counter(
            "auth_introspect_cache_lookups",
            "Lookups in the token introspection cache (deprecated: see auth_cache_lookups).",
            ["result"], registry=r,
        )
        # 429s by the limit refused: run_rate, get_rate (app.ratelimit) and
        # live_actions (MAX_LIVE_ACTIONS, app.errors).
        self.rate_limited_total = Counter(
            "rate_limited", "Requests refused with 429, by the limit they exceeded.",
            ["reason"], registry=r,
        )
        self.rate_limit_storage_errors_total = Counter(
            "rate_limit_storage_errors",
            "Calls to the rate limit storage (RATE_LIMIT_STORAGE_URL) that failed.", registry=r,
        )
        self.rate_limit_unchecked_total = Counter(
            "rate_limit_unchecked",
            "Requests served without a rate check: the rate limit storage did not answer.",
            registry=r,
        )
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        for outcome in ("succeeded", "failed", "cancelled"):
            self.released_total.labels(outcome)
        for reason in ("run_rate", "get_rate", "live_actions"):
            self.rate_limited_total.labels(reason)
        for outcome in ("ok", "error", "malformed"):
            self.introspections.labels(outcome)
        # On every request: the children are looked up once, here.
        self._cache_children = {
            (cache, hit): self.cache_lookups.labels(cache, "hit" if hit else "miss")
            for cache in ("introspect", "dependent_tokens", "groups")
            for hit in (True, False)
        }
        self._introspect_children = {
            hit: self.introspect_cache_lookups.labels("hit" if hit else "miss")
            for hit in (True, False)
        }

    def observe_request(self, route: str, method: str, status: int, latency: float) -> None:
        """Count and time one answered request. The labelled children are kept
        per (route, method, status): few, as routes and methods are normalised."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            labels = (route, method, str(status))
            children = (self.requests.labels(*labels), self.latency.labels(*labels))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(latency)

    # ActionEvents (app.actions)
    def started(self) -> None:
        self.started_total.inc()

    def cancelled(self) -> None:
        self.cancelled_total.inc()

    def released(self, outcome: str) -> None:
        self.released_total.labels(outcome).inc()

    # AuthObserver
    def introspection(self, outcome: str) -> None:
        self.introspections.labels(outcome).inc()

    def auth_cache_lookup(self, cache: str, hit: bool) -> None:
        self._cache_children[cache, hit].inc()
        if cache == "introspect":
            self._introspect_children[hit].inc()

    # RateLimitObserver (app.ratelimit)
    def rate_limited(self, reason: str) -> None:
        self.rate_limited_total.labels(reason).inc()

    def rate_limit_storage_error(self) -> None:
        self.rate_limit_storage_errors_total.inc()

    def rate_limit_unchecked(self) -> None:
        self.rate_limit_unchecked_total.inc()

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            _SettledMultiProcessCollector(registry)
            return _generate_latest(registry)
        return _generate_latest(self.registry)


def init_app(app: Flask, metrics: Metrics) -> None:
    """Wire request ids, the request log and metrics; register before the other hooks."""
    app.extensions["metrics"] = metrics
    app.before_request(_start_request)
    app.after_request(_finish_request)
    ops = Blueprint("ops", __name__)  # probes: no token, logged at DEBUG
    ops.add_url_rule("/healthz", "healthz", public(quiet(_healthz)), methods=["GET"])
    if app.config["METRICS_ENABLED"]:
        ops.add_url_rule("/metrics", "metrics", public(quiet(_metrics)), methods=["GET"])
    app.register_blueprint(ops)


def quiet(view: View) -> View:
    """The view's requests are logged at DEBUG, not INFO (probes)."""
    view.quiet = True  # type: ignore[attr-defined]
    return view


class Draining(ServiceUnavailable):
    description = "This instance is shutting down; send requests to another."


def _healthz() -> Response:
    """Cheap, no auth: 503 while the instance drains before it stops (SIGTERM
    under ``python -m app``), or when the store does not answer."""
    if draining():
        raise Draining()
    try:
        healthy = bool(current_app.extensions["store"].ping())
    except Exception:
        logging.getLogger(__name__).exception("store ping failed")
        healthy = False
    if not healthy:
        raise StoreUnavailable("health check: the store does not answer")
    return jsonify(status="ok")


def _metrics() -> Response:
    metrics: Metrics = current_app.extensions["metrics"]
    return Response(metrics.render(), content_type=CONTENT_TYPE_LATEST)


def _new_request_id() -> str:
    """32 random hex digits (the length and alphabet of ``uuid4().hex``).

    A correlation id, not a secret: the random module's generator (seeded
    again in every forked worker) needs no system call, and a system call
    lets go of the GIL, which under several request threads costs a wait
    to get it back (bench/README.md#log-writes)."""
    return f"{random.getrandbits(128):032x}"


def _start_request() -> None:
    req = request._get_current_object()  # type: ignore[attr-defined]
    ctx_g = g._get_current_object()  # type: ignore[attr-defined]
    ctx_g.request_started = time.perf_counter()
    incoming = req.environ.get("HTTP_X_REQUEST_ID")  # the X-Request-ID header
    ctx_g.request_id = (
        incoming if incoming and _SAFE_REQUEST_ID.fullmatch(incoming) else _new_request_id()
    )


def _finish_request(response: Response) -> Response:
    req = request._get_current_object()  # type: ignore[attr-defined]
    ctx_g = g._get_current_object()  # type: ignore[attr-defined]
    latency = time.perf_counter() - ctx_g.get("request_started", time.perf_counter())
    request_id = ctx_g.get("request_id") or _new_request_id()
    response.headers[REQUEST_ID_HEADER] = request_id
    rule = req.url_rule
    route = rule.rule if rule is not None else "<unmatched>"
    method = req.method if req.method in _METHODS else "OTHER"
    status = response.status_code

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    app.extensions["metrics"].observe_request(route, method, status, latency)

    view = app.view_functions.get(req.endpoint)
    level = logging.DEBUG if getattr(view, "quiet", False) else logging.INFO
    if not app.config["LOG_REQUESTS"] or not log.isEnabledFor(level):
        return response  # off, or nobody reads it: do not build it
    fields: dict[str, Any] = {
        "request_id": request_id,
        "method": clip(req.method),
        "path": clip(req.path),
        "route": route,
        "status": status,
        "latency_ms": round(latency * 1000, 3),
    }
    # The URL's action_id, or the one a view set (a run: its new or found action)
    action_id = (req.view_args or {}).get("action_id") or ctx_g.get("action_id")
    if isinstance(action_id, str):
        fields["action_id"] = clip(action_id)
    caller = _caller(ctx_g)
    if caller:
        fields["caller"] = caller
    fields["remote_addr"] = req.environ.get("REMOTE_ADDR")
    fields["user_agent"] = clip(req.environ.get("HTTP_USER_AGENT"))
    fields["bytes"] = response.content_length
    log.log(level, "%s %s %s", method, route, status, extra=fields)
    return response


def _caller(ctx_g: Any) -> str | None:
    """The caller's effective identity, when its token was checked."""
    state = ctx_g.get("auth_state")
    if state is None:
        return None
    try:
        return str(state.effective_identity)
    except Exception:
        return None
