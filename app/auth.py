"""Globus Auth for the provider: the library's AuthState, built from config
(``make_state_builder``), and the dev-mode introspection backend.

What this adds to the library: a Groups outage denies instead of failing
(ProviderAuthState), a malformed introspection answer is refused before the
library caches it (ProviderAuthClient), the bearer scheme is case-insensitive
(ProviderAuthStateBuilder), timeouts come from config, and the library's
three token caches are made thread-safe and sized from config
(ThreadSafeTTLCache, configure_caches) with their lookups in the metrics
(AuthObserver).

In dev mode only the introspection call is replaced (DevAuthClient):
everything after it (AuthState, its caches, the scope check, authorization)
is the library's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
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
# The library's class-wide caches: (AuthState attribute, name in the metrics,
# prefix of the settings <prefix>_CACHE_SIZE and <prefix>_CACHE_TTL_SECONDS).
CACHES = (
    ("introspect_cache", "introspect", "INTROSPECT"),
    ("dependent_tokens_cache", "dependent_tokens", "DEPENDENT_TOKENS"),
    ("group_membership_cache", "groups", "GROUPS"),
)


class MissingCredentials(RuntimeError):
    """Raised at start when real Globus Auth is asked for but not configured."""


def dev_identity(name: str) -> str:
    """The stable identity id of dev user ``name``."""
    return str(uuid.uuid5(DEV_NAMESPACE, name))


class AuthObserver(Protocol):
    """Told about each token introspection and each lookup in the library's
    caches, by cache name (metrics)."""

    def introspection(self, outcome: str) -> None: ...

    def auth_cache_lookup(self, cache: str, hit: bool) -> None: ...


class _NoObserver:
    def introspection(self, outcome: str) -> None:
        pass

    def auth_cache_lookup(self, cache: str, hit: bool) -> None:
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
    Groups API errors, not network errors or odd data), that dev users
    belong to no group (there is no Groups service to ask), and that a cached
    dependent-token answer is looked up once, not checked and then read."""

    def _get_cached_dependent_tokens(
        self,
    ) -> tuple[bool, globus_sdk.OAuthDependentTokenResponse]:
        """The library's, with one ``get`` where it asks ``key in cache`` and
        then reads ``cache[key]``: between the two the entry may expire or be
        evicted by another thread's insert, and the read raises KeyError.
        Returns (whether the answer came from the cache, the answer)."""
        key = self._dependent_token_cache_key
        cached = self.dependent_tokens_cache.get(key)
        if cached is not None:
            return True, cached
        answer = self.auth_client.oauth2_get_dependent_tokens(self.bearer_token)
        self.dependent_tokens_cache[key] = answer
        return False, answer

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


class ThreadSafeTTLCache(TypedTTLCache[T]):
    """The library's cache (cachetools' TTLCache: least recently used first
    out, each entry for ``ttl`` seconds) behind a lock, as the service's threads
    share it: TTLCache is not thread-safe (under concurrent use it raises
    KeyError and RuntimeError and can end broken for good). Each ``get``, the
    lookup the library and ProviderAuthState make, is counted as a hit or a
    miss of cache ``name``."""

    def __init__(self, *, name: str, maxsize: int, ttl: int, observer: AuthObserver) -> None:
        super().__init__(maxsize=maxsize, ttl=ttl)
        self.name = name
        self.observer = observer
        self._lock = threading.Lock()

    def get(self, key: str) -> T | None:
        with self._lock:
            value = self._cache.get(key)
        self.observer.auth_cache_lookup(self.name, value is not None)
        return value

    def __setitem__(self, key: str, value: T) -> None:
        with self._lock:
            self._cache[key] = value

    def __getitem__(self, key: str) -> T:
        with self._lock:
            return self._cache[key]  # type: ignore[no-any-return]

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._cache

    def __delitem__(self, key: str) -> None:
        """Deleting an entry that is gone is not an error: the library deletes
        an entry it found a moment before (a stale dependent-token answer, in
        ``get_authorizer_for_scope``), which may have expired or been evicted
        since; TTLCache raises KeyError for an expired entry even as it
        removes it."""
        with self._lock, contextlib.suppress(KeyError):
            del self._cache[key]

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    @property
    def maxsize(self) -> int:
        return int(self._cache.maxsize)

    @property
    def ttl(self) -> float:
        return float(self._cache.ttl)


def configure_caches(config: dict[str, Any], observer: AuthObserver | None = None) -> None:
    """Install the library's three caches, thread-safe and sized from config
    (the library's default, 100 entries each, is far too small for a busy
    provider). They can only be set class-wide, one set a process: AuthState
    reads them as class attributes."""
    observer = observer or _NoObserver()
    for attribute, name, prefix in CACHES:
        cache: ThreadSafeTTLCache[Any] = ThreadSafeTTLCache(
            name=name,
            maxsize=int(config[f"{prefix}_CACHE_SIZE"]),
            ttl=int(config[f"{prefix}_CACHE_TTL_SECONDS"]),
            observer=observer,
        )
        setattr(AuthState, attribute, cache)


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
