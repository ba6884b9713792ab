"""The checker: runs the check groups in the order a flow drives a provider
(introspect, authenticate, run, work on the running action, list, a second
caller, wait for completion, release), keeps what they share, and cancels and
releases every action it started before it returns, whatever happened.

Each group is a module with one ``check`` function; the ids and results are
in outcomes.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ap_client.check import (
    authentication,
    completion,
    enumeration,
    introspection,
    other_caller,
    run_request,
    running_action,
    unknown_action,
)
from ap_client.check.bodies import example_bodies
from ap_client.check.http import B, Provider, Unreachable
from ap_client.check.outcomes import CHECK_IDS, FAIL, SKIP, Outcome, from_to
from ap_client.check.protocol import path

LABEL = "ap-client check"


class NeedBody(Exception):
    """No --body was given and none can be made from the input schema's examples."""


@dataclass
class Checker:
    """Runs every check against ``provider`` (callers A and, if given, B)."""

    provider: Provider
    body: dict[str, Any] | None = None
    wait_seconds: float = 120.0
    on_outcome: Callable[[Outcome], None] = lambda _outcome: None
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    started: dict[str, dict[str, Any]] = field(default_factory=dict)  # action_id -> status
    released: set[str] = field(default_factory=set)
    left_behind: list[str] = field(default_factory=list)
    description: dict[str, Any] = field(default_factory=dict)  # the introspection
    first_request: dict[str, Any] = field(default_factory=dict)
    sleep: Callable[[float], None] = time.sleep

    # --- recording ---------------------------------------------------------

    def record(self, check_id: str, result: str, message: str) -> None:
        assert check_id in CHECK_IDS, check_id
        if check_id in self.outcomes:  # the first verdict stands
            return
        outcome = Outcome(check_id, result, message)
        self.outcomes[check_id] = outcome
        self.on_outcome(outcome)

    def skip(self, check_ids: tuple[str, ...] | str, reason: str) -> None:
        for check_id in (check_ids,) if isinstance(check_ids, str) else check_ids:
            self.record(check_id, SKIP, reason)

    @property
    def has_other(self) -> bool:
        return B in self.provider.tokens

    def results(self) -> list[Outcome]:
        return [self.outcomes[c] for c in CHECK_IDS if c in self.outcomes]

    # --- the run -----------------------------------------------------------

    def run(self) -> list[Outcome]:
        """Every check, in order; the provider being unreachable at the start raises
        Unreachable. Whatever happens, what was started is cancelled and released."""
        self.provider.call("GET", "/", caller=None)  # Unreachable: nothing to check
        try:
            self._check()
        except Unreachable as error:
            for check_id in CHECK_IDS:
                self.record(check_id, FAIL, f"the provider stopped answering ({error})")
        finally:
            self._clean_up()
        return self.results()

    def _check(self) -> None:
        introspection.check(self)
        authentication.check(self)
        body = self.body
        if body is None:
            bodies = example_bodies(self.description.get("input_schema"))
            body = bodies[0] if bodies else None
        if body is None and self.outcomes["introspect.ok"].result == FAIL:
            self.skip(from_to("run.accepted", "release.request_id_reusable"),
                      "no input schema to take a body from: pass --body")
            unknown_action.check(self)
            return
        if body is None:
            raise NeedBody("the provider's input_schema has no examples to run with")
        first = run_request.check(self, body)
        if first is None:
            self.skip(from_to("run.times", "release.request_id_reusable"),
                      "run.accepted failed: no action to check")
            unknown_action.check(self)
            return
        action_id = first["action_id"]
        running_action.check(self, action_id)
        second = self.start(body, "second")
        enumeration.check(self, action_id, second)
        other_caller.check(self, action_id, second)
        running_action.check_cancel(self, second)
        final = completion.wait(self, action_id)
        completion.check(self, action_id, final)
        unknown_action.check(self)

    # --- the actions it starts ---------------------------------------------

    def new_request(self, body: dict[str, Any], name: str) -> dict[str, Any]:
        """A run request with a fresh request_id (``name`` in it) and the checker's label."""
        return {"request_id": f"ap-client-check-{name}-{uuid.uuid4()}", "body": body,
                "label": LABEL}

    def start(self, body: dict[str, Any], name: str) -> dict[str, Any] | None:
        """Start one more action; its status, or None when the provider refused."""
        answer = self.provider.call("POST", "/run", json=self.new_request(body, name))
        if 200 <= answer.status < 300 and isinstance(answer.document, dict):
            return self.adopt(answer.document)
        return None

    def adopt(self, status: dict[str, Any]) -> dict[str, Any] | None:
        """Note an action a 2xx answer reports, so that it is cleaned up at the end."""
        action_id = status.get("action_id")
        if isinstance(action_id, str) and action_id:
            self.started[action_id] = status
            return status
        return None

    def running(self, action_id: str) -> bool | None:
        """Whether the action is still running (None: cannot tell)."""
        answer = self.provider.call("GET", path(action_id, "status"))
        if answer.status != 200 or not isinstance(answer.document, dict):
            return None
        self.started[action_id] = answer.document
        return answer.document.get("status") in ("ACTIVE", "INACTIVE")

    def _clean_up(self) -> None:
        """Cancel what still runs, then release everything this run started."""
        for action_id in list(self.started):
            if action_id in self.released:
                continue
            try:
                if self.running(action_id):
                    self.provider.call("POST", path(action_id, "cancel"))
                for _ in range(20):
                    if self.running(action_id) is not True:
                        break
                    self.sleep(0.25)
                answer = self.provider.call("POST", path(action_id, "release"))
            except Unreachable:
                self.left_behind.append(action_id)
                continue
            if answer.status == 200 or answer.status == 404:
                self.released.add(action_id)
            else:
                self.left_behind.append(action_id)
