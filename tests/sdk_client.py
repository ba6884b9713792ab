"""A client of this provider written the way a Python user writes one:
globus-sdk has no Action Provider client, so a small ``globus_sdk.BaseClient``
subclass with a ``base_url`` and an authorizer (README, "From Python").

It is the test driver of that use; the project's own client is ap-client
(app/client/, which has a BaseClient of its own in app/client/api.py).
"""

from __future__ import annotations

from typing import Any

import globus_sdk
from globus_sdk import paging


class WhatTimeClient(globus_sdk.BaseClient):
    """Drives the provider on the newer /actions paths, or with
    ``legacy_paths=True`` on the original /run and /<id>/<operation> paths."""

    service_name = "whattimeisitrightnow"
    error_class = globus_sdk.GlobusAPIError

    def __init__(self, base_url: str, token: str, *, legacy_paths: bool = False) -> None:
        super().__init__(base_url=base_url, authorizer=globus_sdk.AccessTokenAuthorizer(token))
        self.legacy_paths = legacy_paths

    def introspect(self) -> globus_sdk.GlobusHTTPResponse:
        return self.get("/")

    def run(
        self, body: dict[str, Any], request_id: str, **fields: Any
    ) -> globus_sdk.GlobusHTTPResponse:
        document = {"request_id": request_id, "body": body, **fields}
        return self.post("/run" if self.legacy_paths else "/actions", data=document)

    def status(self, action_id: str) -> globus_sdk.GlobusHTTPResponse:
        if self.legacy_paths:
            return self.get(f"/{action_id}/status")
        return self.get(f"/actions/{action_id}")

    def cancel(self, action_id: str) -> globus_sdk.GlobusHTTPResponse:
        prefix = "" if self.legacy_paths else "/actions"
        return self.post(f"{prefix}/{action_id}/cancel")

    def release(self, action_id: str) -> globus_sdk.GlobusHTTPResponse:
        if self.legacy_paths:
            return self.post(f"/{action_id}/release")
        return self.delete(f"/actions/{action_id}")

    def log(
        self, action_id: str, *, limit: int | None = None, marker: str | None = None
    ) -> globus_sdk.GlobusHTTPResponse:
        prefix = "" if self.legacy_paths else "/actions"
        params = {"limit": limit, "marker": marker}
        return self.get(f"{prefix}/{action_id}/log", query_params=_present(params))

    @paging.has_paginator(paging.MarkerPaginator, items_key="actions")
    def list_actions(
        self,
        *,
        status: str | None = None,
        roles: str | None = None,
        limit: int | None = None,
        marker: str | None = None,
    ) -> globus_sdk.GlobusHTTPResponse:
        """GET /actions; ``client.paginated.list_actions(...).items()`` follows
        the markers (globus-sdk's MarkerPaginator reads has_next_page/marker)."""
        params = {"status": status, "roles": roles, "limit": limit, "marker": marker}
        return self.get("/actions", query_params=_present(params))


def _present(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}
