"""Globus Auth for the provider: the library's AuthState, built from config
(``make_state_builder``), and the dev-mode introspection backend.

What this adds to the library: a Groups outage denies instead of failing
(ProviderAuthState), a malformed introspection answer is refused before the
library caches it (ProviderAuthClient), the bearer scheme is case-insensitive
(ProviderAuthStateBuilder), timeouts and the cache size come from config,
and metrics are told of introspections and cache lookups (AuthObserver).

In dev mode only the introspection call is replaced (DevAuthClient):
everything after it (AuthState, its caches, the scope check, authorization)
is the library's.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterable
from typing import Any, Protocol, TypeVar

import flask
import globus_sdk
import requests
from globus_action_provider_tools.authentication import (
    AuthState,
    AuthStateBuilder,
    InactiveTokenError,
    InvalidTokenScopesError,
)
from globus_action_provider_tools.client_factory import ClientFactory
from globus_action_provider_tools.errors import (
    AuthenticationError,
    UnverifiedAuthenticationError,
)
from globus_action_provider_tools.utils import TypedTTLCache

log = logging.getLogger(__name__)

DEV_TOKEN = re.compile(r"dev-token-([A-Za-z0-9._-]{1,64})")
DEV_NAMESPACE = uuid.UUID("6f1b8a52-4c0e-4d3b-9a57-2b0f1c9e7d10")
T = TypeVar("T")
DEV_SCOPE = "https://auth.globus.org/scopes/whattimeisitrightnow.dev/action_all"


class MissingCredentials(RuntimeError):
    """Raised at start when real Globus Auth is asked for but not configured."""


def dev_identity(name: str) -> str:
    """The stable identity id of dev user ``name``."""
    return str(uuid.uuid5(DEV_NAMESPACE, name))


class AuthObserver(Protocol):
    """Told about each token introspection and introspection-cache lookup (metrics)."""

    def introspection(self, outcome: str) -> None: ...

    def introspect_cache_lookup(self, hit: bool) -> None: ...


class _NoObserver:
    def introspection(self, outcome: str) -> None:
        pass

    def introspect_cache_lookup(self, hit: bool) -> None:
        pass


class AuthResponseMalformed(Exception):
    """Globus Auth answered an introspection with something that is not one."""


def transport_params(timeout_seconds: float) -> tuple[tuple[str, Any], ...]:
    """globus-sdk transport settings so that one call, its retry included, takes
    about ``timeout_seconds`` at most: two attempts of half the time each (the
    SDK retries connection errors, 429 and 5xx) and a short pause between them."""
    pause = min(0.5, timeout_seconds / 10)
    return (
        ("http_timeout", max(0.1, (timeout_seconds - pause) / 2)),
        ("max_retries", 1),
        ("max_sleep", pause),
    )


class ProviderAuthClient(globus_sdk.ConfidentialAppAuthClient):
    """The SDK's Auth client, refusing malformed introspection answers (which
    the library would otherwise cache and then trip over) and reporting each
    introspection to an observer."""

    observer: AuthObserver = _NoObserver()

    def oauth2_token_introspect(
        self, token: str, *, include: str | None = None, **kwargs: Any
    ) -> globus_sdk.GlobusHTTPResponse:
        try:
            response = self._introspect(token, include=include, **kwargs)
        except Exception:
            self.observer.introspection("error")
            raise
        if not _well_formed_introspection(response.data):
            self.observer.introspection("malformed")
            raise AuthResponseMalformed("Globus Auth's introspection answer is malformed")
        self.observer.introspection("ok")
        return response

    def _introspect(
        self, token: str, *, include: str | None, **kwargs: Any
    ) -> globus_sdk.GlobusHTTPResponse:
        return super().oauth2_token_introspect(token, include=include, **kwargs)


def _well_formed_introspection(data: Any) -> bool:
    if not isinstance(data, dict) or not isinstance(data.get("active"), bool):
        return False
    if not data["active"]:
        return True
    identities = data.get("identity_set")
    return (
        isinstance(data.get("sub"), str)
        and isinstance(data.get("scope", ""), str)
        and isinstance(identities, list)
        and all(isinstance(i, str) for i in identities)
    )


class TimeoutClientFactory(ClientFactory):
    """The library's client factory, with our timeouts and retries, making our
    Auth client class."""

    def __init__(self, timeout_seconds: float, observer: AuthObserver | None = None) -> None:
        params = transport_params(timeout_seconds)
        self.DEFAULT_AUTH_TRANSPORT_PARAMS = params
        self.DEFAULT_GROUPS_TRANSPORT_PARAMS = params
        self.observer = observer or _NoObserver()

    def make_confidential_app_auth_client(
        self, client_id: str | uuid.UUID, client_secret: str
    ) -> globus_sdk.ConfidentialAppAuthClient:
        client = ProviderAuthClient(
            client_id=client_id,
            client_secret=client_secret,
            transport_params=dict(self.DEFAULT_AUTH_TRANSPORT_PARAMS),
        )
        client.observer = self.observer
        return client


class DevAuthClient(ProviderAuthClient):
    """An Auth client whose token introspection is answered locally.

    ``dev-token-<name>`` is an active token of identity uuid5(<name>) with the
    provider's scope; any other token is inactive.
    """

    def __init__(self, scope: str, observer: AuthObserver | None = None) -> None:
        super().__init__("dev-mode-client", "dev-mode-secret")
        self.scope = scope
        self.observer = observer or _NoObserver()

    def _introspect(
        self, token: str, *, include: str | None = None, **_: Any
    ) -> globus_sdk.GlobusHTTPResponse:
        match = DEV_TOKEN.fullmatch(token)
        if match is None:
            return self._local_response({"active": False})
        identity = dev_identity(match.group(1))
        return self._local_response(
            {
                "active": True,
                "scope": self.scope,
                "sub": identity,
                "username": f"{match.group(1)}@dev.local",
                "identity_set": [identity],
                "client_id": identity,
            }
        )

    def _local_response(self, data: dict[str, Any]) -> globus_sdk.GlobusHTTPResponse:
        raw = requests.Response()
        raw.status_code = 200
        raw._content = json.dumps(data).encode()
        raw.headers["Content-Type"] = "application/json"
        return globus_sdk.GlobusHTTPResponse(raw, client=self)


class ProviderAuthState(AuthState):
    """The library's AuthState, except that a Groups outage or a malformed
    Groups answer denies instead of failing the request (the library handles
    Groups API errors, not network errors or odd data), and that dev users
    belong to no group (there is no Groups service to ask)."""

    @property
    def groups(self) -> frozenset[str]:
        if isinstance(self.auth_client, DevAuthClient):
            return frozenset()
        try:
            return super().groups
        except (globus_sdk.NetworkError, KeyError, TypeError, ValueError) as error:
            log.warning(
                "Globus Groups unavailable (%s): no group principals match", type(error).__name__
            )
            return frozenset()


class ProviderAuthStateBuilder(AuthStateBuilder):
    """Builds the caller's ProviderAuthState from the Authorization header.

    ``build_from_request`` is the library's FlaskAuthStateBuilder's, same
    checks and errors, but for the scheme: the library only accepts the exact
    prefix "Bearer ", while the auth scheme is case-insensitive (RFC 9110
    11.1), so "bearer x" and " BEARER  x " are accepted too.
    """

    def build(self, access_token: str, expected_scopes: Iterable[str] | None = None) -> AuthState:
        scopes = (
            self.default_expected_scopes if expected_scopes is None else frozenset(expected_scopes)
        )
        return ProviderAuthState(
            self.auth_client, access_token, scopes, client_factory=self.client_factory
        )

    def build_from_request(self, *, request: flask.Request | None = None) -> AuthState:
        request = request if request is not None else flask.request
        header = request.headers.get("Authorization")
        if header is None:
            raise UnverifiedAuthenticationError("No Authorization header received")
        scheme, _, token = header.strip().partition(" ")
        if scheme.casefold() != "bearer":
            raise UnverifiedAuthenticationError("No Bearer token in Authorization header")
        token = token.strip()
        if not 10 <= len(token) <= 2048:
            raise UnverifiedAuthenticationError("Bearer token length is unexpected")
        try:
            return self.build(token)
        except InvalidTokenScopesError as error:
            raise AuthenticationError("Token has invalid scopes") from error
        except InactiveTokenError as error:
            raise AuthenticationError("Token is invalid, expired, or revoked") from error


class ObservedTTLCache(TypedTTLCache[T]):
    """The library's cache, telling an observer whether each lookup hit."""

    def __init__(self, *, maxsize: int, ttl: int, observer: AuthObserver) -> None:
        super().__init__(maxsize=maxsize, ttl=ttl)
        self.observer = observer

    def get(self, key: str) -> T | None:
        value = super().get(key)
        self.observer.introspect_cache_lookup(value is not None)
        return value

    @property
    def maxsize(self) -> int:
        return int(self._cache.maxsize)

    @property
    def ttl(self) -> float:
        return float(self._cache.ttl)


def configure_caches(config: dict[str, Any], observer: AuthObserver | None = None) -> None:
    """Size the library's introspection cache (the library's default, 100
    tokens, is far too small for a busy provider). It can only be set
    class-wide, one a process: AuthState reads ``AuthState.introspect_cache``
    by that name."""
    AuthState.introspect_cache = ObservedTTLCache(
        maxsize=int(config["INTROSPECT_CACHE_SIZE"]),
        ttl=int(config["INTROSPECT_CACHE_TTL_SECONDS"]),
        observer=observer or _NoObserver(),
    )


def provider_scope(config: dict[str, Any]) -> str:
    if config["AUTH_MODE"] == "dev":
        return config["SCOPE"] or DEV_SCOPE
    return config["SCOPE"]


def make_state_builder(
    config: dict[str, Any], observer: AuthObserver | None = None
) -> ProviderAuthStateBuilder:
    """The AuthState builder for this configuration (dev or Globus Auth)."""
    mode = config["AUTH_MODE"]
    factory = TimeoutClientFactory(float(config["AUTH_TIMEOUT_SECONDS"]), observer)
    scope = provider_scope(config)
    if mode == "dev":
        auth_client: globus_sdk.ConfidentialAppAuthClient = DevAuthClient(scope, observer)
    elif mode == "globus":
        missing = [k for k in ("CLIENT_ID", "CLIENT_SECRET", "SCOPE") if not config[k]]
        if missing:
            raise MissingCredentials(
                f"Globus credentials missing: set {', '.join('FLASK_' + k for k in missing)}"
            )
        auth_client = factory.make_confidential_app_auth_client(
            config["CLIENT_ID"], config["CLIENT_SECRET"]
        )
    else:
        raise MissingCredentials(f"AUTH_MODE must be 'globus' or 'dev', not {mode!r}")
    configure_caches(config, observer)
    return ProviderAuthStateBuilder(auth_client, [scope], client_factory=factory)
