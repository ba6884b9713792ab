"""Store many actions through the real ActionService (no HTTP), for the
memory and latency-flatness measurements."""

from __future__ import annotations

from typing import Any

from flask import Flask
from globus_action_provider_tools.authentication import AuthState
from globus_action_provider_tools.data_types import ActionRequest

# Long-running actions: nothing completes or is swept while we measure.
BENCH_CONFIG: dict[str, Any] = {
    "AUTH_MODE": "dev",
    "MIN_DELAY_SECONDS": 86_400,
    "MAX_DELAY_SECONDS": 172_800,
}


def callers(app: Flask, users: int) -> list[AuthState]:
    """AuthStates of ``users`` dev users, built by the app's own builder."""
    builder = app.extensions["auth_state_builder"]
    return [builder.build(f"dev-token-user{i}") for i in range(users)]


def fill(app: Flask, count: int, users: int = 100, tag: str = "fill") -> None:
    """Start ``count`` actions, round-robin over ``users`` callers."""
    service = app.extensions["actions"]
    states = callers(app, users)
    for i in range(count):
        request = ActionRequest(request_id=f"{tag}-{i}", body={"utc_offset": 5.5})
        service.run(request, states[i % users])
