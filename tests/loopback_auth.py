"""Globus Auth's token introspection as a real HTTP server on loopback.

For tests and benchmarks that run the service in its own server process,
where ``responses`` (app.testing) cannot reach: the service's real
globus-sdk client calls this server, found through GLOBUS_SDK_SERVICE_URL_AUTH
(globus_sdk.config reads it ahead of GLOBUS_SDK_ENVIRONMENT). Every token is
active with SCOPE; a token starting with SLOW_PREFIX is answered only after
``slow_seconds``, as Auth would when it is slow.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

SCOPE = "https://auth.globus.org/scopes/00000000-0000-4000-8000-00000000bbbb/action_all"
SLOW_PREFIX = "slow-"
INTROSPECT_PATH = "/v2/oauth2/token/introspect"


@dataclass
class AuthCounters:
    """The introspections Auth was asked for, in order: (token prefix, caller),
    the caller being what ``identify_caller`` says of the caller's port, if set."""

    introspections: list[tuple[str, object]] = field(default_factory=list)
    identify_caller: Callable[[int], object] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, token: str) -> list[object]:
        """The callers that asked about ``token``."""
        with self.lock:
            return [who for prefix, who in self.introspections if prefix == token[:16]]


def _identity(token: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, token))


def _handler(slow_seconds: float, counters: AuthCounters) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the real Auth

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            if self.path.split("?")[0] != INTROSPECT_PATH or "token" not in form:
                self._answer(404, {"error": "not_found"})
                return
            token = form["token"][0]
            identify = counters.identify_caller
            who = identify(self.client_address[1]) if identify else None
            with counters.lock:
                counters.introspections.append((token[:16], who))
            if token.startswith(SLOW_PREFIX):
                time.sleep(slow_seconds)
            identity = _identity(token)
            self._answer(200, {
                "active": True, "scope": SCOPE, "sub": identity,
                "username": f"{identity[:8]}@example.org",
                "client_id": str(uuid.uuid4()), "identity_set": [identity],
            })

        def _answer(self, status: int, data: dict[str, object]) -> None:
            body = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: tokens would be in the request line of other handlers

    return Handler


@contextmanager
def loopback_auth(slow_seconds: float = 3.0) -> Iterator[tuple[str, AuthCounters]]:
    """Serve introspection on a free loopback port; yield (base URL, counters)."""
    counters = AuthCounters()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(slow_seconds, counters))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", counters
    finally:
        server.shutdown()
        server.server_close()


def production_auth_env(auth_url: str) -> dict[str, str]:
    """The service's environment for real (not dev) auth against ``auth_url``.
    AUTH_TIMEOUT_SECONDS 10: a 3 s answer is waited for, not cut short."""
    return {
        "FLASK_AUTH_MODE": "globus",
        "FLASK_CLIENT_ID": "00000000-0000-4000-8000-00000000bbbb",
        "FLASK_CLIENT_SECRET": "loopback-secret",
        "FLASK_SCOPE": SCOPE,
        "FLASK_AUTH_TIMEOUT_SECONDS": "10",
        "GLOBUS_SDK_SERVICE_URL_AUTH": auth_url,
    }
