"""The client's address and scheme as a trusted reverse proxy forwards them.

werkzeug's ProxyFix (one hop: the last X-Forwarded-For entry, the one our
proxy added; X-Forwarded-Proto) applied only to requests whose peer is one
of TRUSTED_PROXIES. From any other peer the headers change nothing, so a
client cannot claim another address by sending them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.middleware.proxy_fix import ProxyFix

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class TrustedProxyFix:
    def __init__(self, app: WSGIApp, trusted: list[str]) -> None:
        self.app = app
        self.fixed = ProxyFix(app, x_for=1, x_proto=1)
        self.networks = tuple(ipaddress.ip_network(t, strict=False) for t in trusted)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if (
            "HTTP_X_FORWARDED_FOR" in environ or "HTTP_X_FORWARDED_PROTO" in environ
        ) and self.trusts(environ.get("REMOTE_ADDR") or ""):
            return self.fixed(environ, start_response)
        return self.app(environ, start_response)

    def trusts(self, address: str) -> bool:
        try:
            peer = ipaddress.ip_address(address)
        except ValueError:  # a Unix socket has no address: not a proxy we know
            return False
        return any(peer in network for network in self.networks)
