"""Globus Auth for the provider: the library's FlaskAuthStateBuilder, built
from config, and the dev-mode introspection backend.

In dev mode only the introspection call is replaced: everything after it
(AuthState, its caches, the scope check, authorization) is the library's.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterable
from typing import Any

import globus_sdk
import requests
from globus_action_provider_tools.authentication import AuthState, AuthStateBuilder
from globus_action_provider_tools.client_factory import ClientFactory
from globus_action_provider_tools.flask.helpers import FlaskAuthStateBuilder
from globus_action_provider_tools.utils import TypedTTLCache

log = logging.getLogger(__name__)

DEV_TOKEN = re.compile(r"dev-token-([A-Za-z0-9._-]{1,64})")
DEV_NAMESPACE = uuid.UUID("6f1b8a52-4c0e-4d3b-9a57-2b0f1c9e7d10")
DEV_SCOPE = "https://auth.globus.org/scopes/whattimeisitrightnow.dev/action_all"


class MissingCredentials(RuntimeError):
    """Raised at start when real Globus Auth is asked for but not configured."""


def dev_identity(name: str) -> str:
    """The stable identity id of dev user ``name``."""
    return str(uuid.uuid5(DEV_NAMESPACE, name))


class TimeoutClientFactory(ClientFactory):
    """The library's client factory, with our timeout and one retry."""

    def __init__(self, timeout_seconds: float) -> None:
        params = (("http_timeout", timeout_seconds), ("max_retries", 1), ("max_sleep", 1))
        self.DEFAULT_AUTH_TRANSPORT_PARAMS = params
        self.DEFAULT_GROUPS_TRANSPORT_PARAMS = params


class DevAuthClient(globus_sdk.ConfidentialAppAuthClient):
    """An Auth client whose token introspection is answered locally.

    ``dev-token-<name>`` is an active token of identity uuid5(<name>) with the
    provider's scope; any other token is inactive.
    """

    def __init__(self, scope: str) -> None:
        super().__init__("dev-mode-client", "dev-mode-secret")
        self.scope = scope

    def oauth2_token_introspect(
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
    """The library's AuthState, except that a Groups outage denies instead of
    failing the request (the library handles Groups API errors, not network
    errors)."""

    @property
    def groups(self) -> frozenset[str]:
        try:
            return super().groups
        except globus_sdk.NetworkError as error:
            log.warning(
                "Globus Groups unreachable (%s): no group principals match", type(error).__name__
            )
            return frozenset()


class DevAuthState(AuthState):
    """Dev users belong to no group (there is no Groups service to ask)."""

    @property
    def groups(self) -> frozenset[str]:
        return frozenset()


class _StateClassBuilder(AuthStateBuilder):
    state_class: type[AuthState] = ProviderAuthState

    def build(self, access_token: str, expected_scopes: Iterable[str] | None = None) -> AuthState:
        scopes = (
            self.default_expected_scopes if expected_scopes is None else frozenset(expected_scopes)
        )
        return self.state_class(
            self.auth_client, access_token, scopes, client_factory=self.client_factory
        )


class ProviderAuthStateBuilder(FlaskAuthStateBuilder, _StateClassBuilder):
    """FlaskAuthStateBuilder (header parsing, error mapping) building our state
    class: its build_from_request calls super().build, which the MRO sends to
    _StateClassBuilder."""


class DevAuthStateBuilder(ProviderAuthStateBuilder):
    state_class = DevAuthState


def configure_caches(config: dict[str, Any]) -> None:
    """Size the library's introspection cache (it is class-wide: one a process)."""
    AuthState.introspect_cache = TypedTTLCache(
        maxsize=int(config["INTROSPECT_CACHE_SIZE"]),
        ttl=int(config["INTROSPECT_CACHE_TTL_SECONDS"]),
    )


def provider_scope(config: dict[str, Any]) -> str:
    if config["AUTH_MODE"] == "dev":
        return config["SCOPE"] or DEV_SCOPE
    return config["SCOPE"]


def make_state_builder(config: dict[str, Any]) -> FlaskAuthStateBuilder:
    """The library's FlaskAuthStateBuilder for this configuration."""
    mode = config["AUTH_MODE"]
    factory = TimeoutClientFactory(float(config["AUTH_TIMEOUT_SECONDS"]))
    scope = provider_scope(config)
    if mode == "dev":
        auth_client: globus_sdk.ConfidentialAppAuthClient = DevAuthClient(scope)
    elif mode == "globus":
        missing = [k for k in ("CLIENT_ID", "CLIENT_SECRET", "SCOPE") if not config[k]]
        if missing:
            raise MissingCredentials(
                f"Globus credentials missing: set {', '.join('FLASK_' + k for k in missing)}"
                " (or run with --dev to try the service locally)"
            )
        auth_client = factory.make_confidential_app_auth_client(
            config["CLIENT_ID"], config["CLIENT_SECRET"]
        )
    else:
        raise MissingCredentials(f"AUTH_MODE must be 'globus' or 'dev', not {mode!r}")
    configure_caches(config)
    builder = DevAuthStateBuilder if mode == "dev" else ProviderAuthStateBuilder
    return builder(auth_client, [scope], client_factory=factory)
