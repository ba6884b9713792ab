"""Tokens: Globus native-app login/logout, stored per provider URL, refreshed as needed.

Stored with globus-sdk's JSONTokenStorage (one file, mode 0600, in a 0700
directory), one namespace per provider URL holding the token data of the
provider's resource server. The Globus Auth client id used at login is kept
with the tokens (as an extra field) so refreshing needs nothing more. No
function here prints or logs a token.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import globus_sdk

from ap_client.api import USER_AGENT
from ap_client.sdk import JSONTokenStorage, TokenStorageData

TOKEN_FILE_ENV = "ACTION_PROVIDER_TOKEN_FILE"  # noqa: S105 (a variable name)
CLIENT_ID_ENV = "ACTION_PROVIDER_CLIENT_ID"


class LoginError(Exception):
    """Login could not complete; the message says why (never contains a token)."""


def token_file() -> Path:
    """$ACTION_PROVIDER_TOKEN_FILE, else $XDG_CONFIG_HOME (~/.config)/ap-client/tokens.json."""
    explicit = os.environ.get(TOKEN_FILE_ENV)
    if explicit:
        return Path(explicit)
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "ap-client" / "tokens.json"


def provider_key(url: str) -> str:
    return url.rstrip("/")


class _TokenData(TokenStorageData):
    """Token data whose extra fields (our client_id) are written to the file too."""

    def to_dict(self, include_extra: bool = True) -> dict[str, Any]:
        return super().to_dict(include_extra=include_extra)


def _storage(url: str, path: Path | None = None) -> JSONTokenStorage:
    path = path or token_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return JSONTokenStorage(path, namespace=provider_key(url))


def _restrict(path: Path) -> None:
    # The SDK creates the file 0600; keep it so if it already existed looser.
    if path.exists():
        path.chmod(0o600)


def _auth_client(client_id: str) -> globus_sdk.NativeAppAuthClient:
    return globus_sdk.NativeAppAuthClient(client_id, app_name=USER_AGENT)


def login(
    url: str,
    *,
    scope: str,
    client_id: str,
    show_url: Callable[[str], None],
    ask_code: Callable[[], str],
    path: Path | None = None,
) -> TokenStorageData:
    """Native-app flow for ``scope``: show the URL, take the pasted code, store the tokens."""
    auth = _auth_client(client_id)
    auth.oauth2_start_flow(
        requested_scopes=scope,
        refresh_tokens=True,
        prefill_named_grant=f"ap-client on {socket.gethostname()}",
    )
    show_url(auth.oauth2_get_authorize_url())
    code = ask_code().strip()
    if not code:
        raise LoginError("no authorization code given")
    try:
        response = auth.oauth2_exchange_code_for_tokens(code)
    except globus_sdk.GlobusAPIError as error:
        raise LoginError(f"Globus Auth refused the code ({_brief(error)})") from None
    except globus_sdk.NetworkError as error:
        raise LoginError(f"could not reach Globus Auth ({_brief(error)})") from None
    resource_server, tokens = _tokens_for_scope(response.by_resource_server, scope)
    data = _TokenData(
        resource_server=resource_server,
        identity_id=None,
        scope=tokens["scope"],
        access_token=tokens["access_token"],
        refresh_token=tokens.get("refresh_token"),
        expires_at_seconds=int(tokens["expires_at_seconds"]),
        token_type=tokens.get("token_type"),
        extra={"client_id": client_id},
    )
    storage = _storage(url, path)
    for old in storage.get_token_data_by_resource_server():
        storage.remove_token_data(old)
    storage.store_token_data_by_resource_server({resource_server: data})
    _restrict(Path(storage.filepath))
    return data


def _tokens_for_scope(
    by_resource_server: dict[str, dict[str, Any]], scope: str
) -> tuple[str, dict[str, Any]]:
    for resource_server, tokens in by_resource_server.items():
        if scope in str(tokens.get("scope", "")).split():
            return resource_server, tokens
    if len(by_resource_server) == 1:
        return next(iter(by_resource_server.items()))
    raise LoginError(f"Globus Auth returned no token for scope {scope}")


def stored(url: str, path: Path | None = None) -> TokenStorageData | None:
    """The token data stored for this provider URL, if any."""
    if not (path or token_file()).exists():
        return None
    entries = _storage(url, path).get_token_data_by_resource_server()
    return next(iter(entries.values()), None)


def stored_authorizer(
    url: str, path: Path | None = None
) -> globus_sdk.authorizers.GlobusAuthorizer | None:
    """An authorizer from the stored login for this URL (refreshing, when it can)."""
    data = stored(url, path)
    if data is None:
        return None
    client_id = data.extra.get("client_id")
    if not data.refresh_token or not client_id:
        return globus_sdk.AccessTokenAuthorizer(data.access_token)

    def save(response: globus_sdk.OAuthRefreshTokenResponse) -> None:
        tokens = response.by_resource_server.get(data.resource_server)
        if tokens is None:
            return
        storage = _storage(url, path)
        storage.store_token_data_by_resource_server(
            {
                data.resource_server: _TokenData(
                    resource_server=data.resource_server,
                    identity_id=data.identity_id,
                    scope=tokens.get("scope") or data.scope,
                    access_token=tokens["access_token"],
                    refresh_token=tokens.get("refresh_token") or data.refresh_token,
                    expires_at_seconds=int(tokens["expires_at_seconds"]),
                    token_type=tokens.get("token_type"),
                    extra={"client_id": client_id},
                )
            }
        )
        _restrict(Path(storage.filepath))

    return globus_sdk.RefreshTokenAuthorizer(
        data.refresh_token,
        _auth_client(client_id),
        access_token=data.access_token,
        expires_at=data.expires_at_seconds,
        on_refresh=save,
    )


def logout(url: str, *, path: Path | None = None) -> tuple[bool, list[str]]:
    """Revoke and forget this URL's tokens: (whether any were stored, warnings)."""
    if not (path or token_file()).exists():
        return False, []
    storage = _storage(url, path)
    warnings: list[str] = []
    entries = storage.get_token_data_by_resource_server()
    for resource_server, data in entries.items():
        client_id = data.extra.get("client_id")
        if client_id:
            auth = _auth_client(client_id)
            for token in (data.refresh_token, data.access_token):
                if not token:
                    continue
                try:
                    auth.oauth2_revoke_token(token)
                except (globus_sdk.GlobusAPIError, globus_sdk.NetworkError) as error:
                    warnings.append(f"could not revoke a token with Globus Auth ({_brief(error)})")
                    break
        storage.remove_token_data(resource_server)
    _restrict(Path(storage.filepath))
    return bool(entries), warnings


def _brief(error: Exception) -> str:
    if isinstance(error, globus_sdk.GlobusAPIError):
        return f"HTTP {error.http_status} {error.code}"
    return type(error).__name__
