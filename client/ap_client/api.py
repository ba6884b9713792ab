"""The Actions API over HTTP: a small globus_sdk.BaseClient for any provider URL.

Methods return the provider's JSON documents; HTTP errors raise
globus_sdk.GlobusAPIError and network failures globus_sdk.NetworkError. The
transport never retries on its own: the CLI decides (only ``--wait`` retries,
honouring Retry-After), so a failing call answers at once.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import globus_sdk

from ap_client import sdk

USER_AGENT = "ap-client"
DEFAULT_TIMEOUT_SECONDS = 30.0


class ActionProviderClient(globus_sdk.BaseClient):
    """One Action Provider, addressed by its base URL."""

    def __init__(
        self,
        url: str,
        *,
        authorizer: globus_sdk.authorizers.GlobusAuthorizer | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__(
            base_url=url.rstrip("/") + "/",
            authorizer=authorizer,
            app_name=USER_AGENT,
            **sdk.no_retries(timeout),
        )

    def introspect(self) -> dict[str, Any]:
        return _document(self.get("/"))

    def run(
        self,
        body: dict[str, Any],
        *,
        request_id: str,
        label: str | None = None,
        monitor_by: list[str] | None = None,
        manage_by: list[str] | None = None,
        deadline: str | None = None,
        release_after: str | None = None,
        allowed_clients: list[str] | None = None,
    ) -> dict[str, Any]:
        request: dict[str, Any] = {"request_id": request_id, "body": body}
        if label is not None:
            request["label"] = label
        # Left out, the provider defaults them to the caller.
        if monitor_by:
            request["monitor_by"] = monitor_by
        if manage_by:
            request["manage_by"] = manage_by
        if allowed_clients:
            request["allowed_clients"] = allowed_clients
        if deadline is not None:
            request["deadline"] = deadline
        if release_after is not None:
            request["release_after"] = release_after
        return _document(self.post("/run", data=request))

    def status(self, action_id: str) -> dict[str, Any]:
        return _document(self.get(f"/{_segment(action_id)}/status"))

    def cancel(self, action_id: str) -> dict[str, Any]:
        return _document(self.post(f"/{_segment(action_id)}/cancel"))

    def release(self, action_id: str) -> dict[str, Any]:
        return _document(self.post(f"/{_segment(action_id)}/release"))

    def enumerate(
        self,
        *,
        statuses: list[str] | None = None,
        roles: list[str] | None = None,
        limit: int | None = None,
        marker: str | None = None,
    ) -> Any:
        """GET /actions; the document as sent (a page object or a plain list)."""
        params: dict[str, Any] = {}
        if statuses:
            params["status"] = ",".join(statuses)
        if roles:
            params["roles"] = ",".join(roles)
        if limit is not None:
            params["limit"] = limit
        if marker is not None:
            params["marker"] = marker
        return self.get("/actions", query_params=params).data

    def log(
        self, action_id: str, *, limit: int | None = None, marker: str | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if limit is not None:
            params["limit"] = limit
        if marker is not None:
            params["marker"] = marker
        return _document(self.get(f"/{_segment(action_id)}/log", query_params=params))


def _segment(action_id: str) -> str:
    """An action id as one path segment: '/' or '?' in it cannot change the route."""
    return quote(action_id, safe="")


def _document(response: globus_sdk.GlobusHTTPResponse) -> dict[str, Any]:
    data = response.data
    if not isinstance(data, dict):
        raise ProtocolError(f"expected a JSON object from {response.http_status} response")
    return data


class ProtocolError(Exception):
    """The provider answered 2xx with something that is not an Actions API document."""
