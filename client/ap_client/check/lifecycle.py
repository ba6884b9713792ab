"""The checks, in the order a flow drives a provider: introspect, run (and its
retries), follow, cancel, release; with a second caller when one is given.

Every check has a stable id (CHECK_IDS) and ends as pass, fail, warn (allowed
by the spec but not what Globus Flows expects, or not finished in time) or
skip (with the reason). The checker starts a few actions and cancels and
releases them before it returns, whatever happened.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from ap_client.check import spec
from ap_client.check.http import A, Answer, Provider, Unreachable, segment

B = "B"  # the caller given by --other-token
PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"
TERMINAL = ("SUCCEEDED", "FAILED")
BAD_TOKEN = "ap-client-check-not-a-valid-token"  # noqa: S105 (a deliberately wrong token)
LABEL = "ap-client check"

CHECK_IDS = (
    "introspect.ok",
    "introspect.schema",
    "introspect.no_token",
    "introspect.cors",
    "auth.no_token",
    "auth.bad_token",
    "run.accepted",
    "run.times",
    "run.idempotent",
    "run.conflict",
    "run.invalid_body",
    "status.paths",
    "release.running",
    "resume.running",
    "log.supported",
    "enumerate.lists",
    "enumerate.paging",
    "other.isolation",
    "other.enumerate",
    "cancel.running",
    "status.completes",
    "cancel.completed",
    "release.completed",
    "release.gone",
    "release.request_id_reusable",
    "unknown.action",
)

__all__ = ["CHECK_IDS", "Checker", "NeedBody", "Outcome", "Unreachable", "example_bodies"]


class NeedBody(Exception):
    """No --body was given and none can be made from the input schema's examples."""


@dataclass
class Outcome:
    id: str
    result: str
    message: str


def routes(action_id: str) -> dict[str, list[tuple[str, str]]]:
    """Each operation on one action: its original path and its /actions path."""
    x = segment(action_id)
    return {
        "status": [("GET", f"/{x}/status"), ("GET", f"/actions/{x}")],
        "cancel": [("POST", f"/{x}/cancel"), ("POST", f"/actions/{x}/cancel")],
        "release": [("POST", f"/{x}/release"), ("DELETE", f"/actions/{x}")],
        "resume": [("POST", f"/{x}/resume"), ("POST", f"/actions/{x}/resume")],
        "log": [("GET", f"/{x}/log"), ("GET", f"/actions/{x}/log")],
    }


def route_missing(answer: Answer) -> bool:
    """The provider has no such route (as opposed to: no such action)."""
    return answer.status in (404, 405) and answer.error_code() != "ActionNotFound"


def example_bodies(schema: Any) -> list[dict[str, Any]]:
    """Valid bodies from an input schema's examples (its own, or its properties')."""
    if not isinstance(schema, dict):
        return []
    candidates: list[Any] = list(schema.get("examples") or [])
    if "example" in schema:
        candidates.append(schema["example"])
    properties = schema.get("properties") or {}
    names = schema.get("required") or list(properties)
    values: dict[str, list[Any]] = {}
    for name in names:
        prop = properties.get(name) if isinstance(properties.get(name), dict) else {}
        found = list(prop.get("examples") or [])
        for key in ("example", "default", "const"):
            if key in prop:
                found.append(prop[key])
        found += list(prop.get("enum") or [])
        if found:
            values[name] = found
    if names and len(values) == len(names):
        for i in range(max(len(v) for v in values.values())):
            candidates.append({name: found[i % len(found)] for name, found in values.items()})
    if not names:
        candidates.append({})
    bodies: list[dict[str, Any]] = []
    for candidate in candidates:
        if isinstance(candidate, dict) and candidate not in bodies and _valid(candidate, schema):
            bodies.append(candidate)
    return bodies


def invalid_body(schema: Any, body: dict[str, Any]) -> dict[str, Any] | None:
    """A body the input schema refuses, if one can be made."""
    if not isinstance(schema, dict):
        return None
    candidates: list[dict[str, Any]] = [{}, {**body, "ap_client_check_unknown": True}]
    candidates += [{**body, name: ["ap-client", "check"]} for name in body]
    candidates += [{**body, name: None} for name in body]
    return next((c for c in candidates if not _valid(c, schema)), None)


def _valid(document: Any, schema: dict[str, Any]) -> bool:
    try:
        validator = jsonschema.validators.validator_for(schema, jsonschema.Draft7Validator)
        return validator(schema).is_valid(document)
    except (jsonschema.SchemaError, TypeError, ValueError):
        return True  # a schema we cannot read: let the provider judge


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
    description: dict[str, Any] = field(default_factory=dict)
    request: dict[str, Any] = field(default_factory=dict)  # the first run request
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
        self.introspection()
        self.authentication()
        body = self.body
        if body is None:
            bodies = example_bodies(self.description.get("input_schema"))
            body = bodies[0] if bodies else None
        if body is None and self.outcomes["introspect.ok"].result == FAIL:
            self.skip(CHECK_IDS[6:-1], "no input schema to take a body from: pass --body")
            self.unknown_action()
            return
        if body is None:
            raise NeedBody("the provider's input_schema has no examples to run with")
        first = self.runs(body)
        if first is None:
            self.skip(CHECK_IDS[7:-1], "run.accepted failed: no action to check")
            self.unknown_action()
            return
        action_id = first["action_id"]
        self.status_paths(action_id)
        self.release_running(action_id)
        self.resume(action_id)
        self.log(action_id)
        second = self.start(body, "second")
        self.enumeration(action_id, second)
        self.isolation(action_id, second)
        self.cancel_running(second)
        final = self.completes(action_id)
        self.after_completion(action_id, final, body)
        self.unknown_action()

    # --- introspection and authentication ----------------------------------------

    def introspection(self) -> None:
        answer = self.provider.call("GET", "/")
        if answer.status == 200 and isinstance(answer.document, dict):
            self.description = answer.document
            self.record("introspect.ok", PASS, "GET / answered 200 with a JSON object")
            found = spec.problems(answer.document, "ProviderDescription")
            if found:
                self.record("introspect.schema", FAIL, _first("ProviderDescription", found))
            else:
                self.record("introspect.schema", PASS, "a valid ProviderDescription")
        else:
            self.record(
                "introspect.ok", FAIL, f"expected 200 and a JSON object from GET /, got "
                f"{answer.brief()}{'' if answer.status != 200 else ' (not an object)'}",
            )
            self.skip("introspect.schema", "introspect.ok failed")

        public = "public" in (self.description.get("visible_to") or [])
        anonymous = self.provider.call("GET", "/", caller=None)
        if public:
            good = anonymous.status == 200
            expected = "200 (visible_to includes public)"
        else:
            good = anonymous.status == 401 and anonymous.is_error_document()
            expected = "401 JSON {code, description} (visible_to has no public)"
        self.record(
            "introspect.no_token", PASS if good else FAIL,
            f"GET / without a token: expected {expected}, got {anonymous.brief()}",
        )

        preflight = self.provider.call(
            "OPTIONS", "/", caller=None,
            headers={"Origin": "https://app.globus.org", "Access-Control-Request-Method": "GET"},
        )
        allow = preflight.headers.get("Access-Control-Allow-Origin")
        good = 200 <= preflight.status < 300 and allow in ("*", "https://app.globus.org")
        self.record(
            "introspect.cors", PASS if good else FAIL,
            f"OPTIONS / (CORS preflight): expected 2xx with Access-Control-Allow-Origin, "
            f"got {preflight.brief()}, Access-Control-Allow-Origin {allow or 'missing'}",
        )

    def _unauthenticated_calls(self) -> list[tuple[str, str, Any]]:
        fake = f"ap-client-check-{uuid.uuid4()}"
        calls: list[tuple[str, str, Any]] = [
            ("POST", "/run", {"request_id": f"ap-client-check-{uuid.uuid4()}", "body": {}}),
            ("POST", "/actions", {"request_id": f"ap-client-check-{uuid.uuid4()}", "body": {}}),
            ("GET", "/actions", None),
        ]
        for paths in routes(fake).values():
            calls += [(method, path, None) for method, path in paths]
        return calls

    def authentication(self) -> None:
        for check_id, caller, token, what in (
            ("auth.no_token", None, None, "without a token"),
            ("auth.bad_token", None, BAD_TOKEN, "with an invalid token"),
        ):
            wrong = []
            checked = 0
            for method, path, document in self._unauthenticated_calls():
                answer = self.provider.call(method, path, caller=caller, token=token, json=document)
                if route_missing(answer) and answer.status != 401:
                    continue  # the provider has no such route (e.g. no /resume)
                checked += 1
                if 200 <= answer.status < 300 and isinstance(answer.document, dict):
                    self._adopt(answer.document)
                if not (answer.status == 401 and answer.is_error_document()):
                    wrong.append(f"{answer.what}: {answer.brief()}")
            if wrong:
                self.record(
                    check_id, FAIL,
                    f"{what}, expected 401 JSON {{code, description}} on every route; "
                    f"{len(wrong)} of {checked} did not, e.g. {wrong[0]}",
                )
            else:
                self.record(check_id, PASS, f"{what}: 401 JSON on all {checked} routes")

    # --- run ---------------------------------------------------------------

    def start(self, body: dict[str, Any], name: str) -> dict[str, Any] | None:
        answer = self.provider.call("POST", "/run", json=self._request(body, name))
        if 200 <= answer.status < 300 and isinstance(answer.document, dict):
            return self._adopt(answer.document)
        return None

    def _request(self, body: dict[str, Any], name: str, request_id: str | None = None):
        return {
            "request_id": request_id or f"ap-client-check-{name}-{uuid.uuid4()}",
            "body": body, "label": LABEL,
        }

    def _adopt(self, status: dict[str, Any]) -> dict[str, Any] | None:
        action_id = status.get("action_id")
        if isinstance(action_id, str) and action_id:
            self.started[action_id] = status
            return status
        return None

    def runs(self, body: dict[str, Any]) -> dict[str, Any] | None:
        request = self._request(body, "first")
        self.request = request
        answer = self.provider.call("POST", "/run", json=request)
        status = answer.document if isinstance(answer.document, dict) else None
        if status is not None and 200 <= answer.status < 300:
            self._adopt(status)
        found = spec.problems(status, "ActionStatus") if status is not None else ["not JSON"]
        if answer.status == 202 and not found:
            self.record("run.accepted", PASS, "POST /run: 202 and a valid ActionStatus")
        elif 200 <= answer.status < 300 and not found:
            self.record(
                "run.accepted", WARN,
                f"POST /run: expected 202 for a new action, got {answer.status} "
                "(Globus Flows accepts any 2xx)",
            )
        else:
            detail = found[0] if 200 <= answer.status < 300 else ""
            self.record(
                "run.accepted", FAIL,
                f"POST /run: expected 202 and a valid ActionStatus, got {answer.brief()}"
                + (f"; {detail}" if detail else ""),
            )
        if status is None or not isinstance(status.get("action_id"), str):
            return None

        times = spec.time_problems(status)
        self.record(
            "run.times", FAIL if times else PASS,
            f"{'; '.join(times)}" if times
            else "times are ISO 8601 with an offset, release_after an ISO 8601 duration",
        )

        again = self.provider.call("POST", "/run", json=request)
        same = isinstance(again.document, dict) and again.document.get("action_id") == (
            status["action_id"]
        )
        if again.status == 200 and same:
            self.record("run.idempotent", PASS, "the same request again: 200, same action_id")
        else:
            if isinstance(again.document, dict) and 200 <= again.status < 300 and not same:
                self._adopt(again.document)
            got = again.document.get("action_id") if isinstance(again.document, dict) else None
            self.record(
                "run.idempotent", FAIL if not same else WARN,
                f"the same request again (a retry): expected 200 and action_id "
                f"{status['action_id']}, got {again.brief()} and action_id {got}",
            )

        self.conflict(body, request)

        wrong_body = invalid_body(self.description.get("input_schema"), body)
        if wrong_body is None:
            self.skip("run.invalid_body", "the input schema refuses no body we can make")
        else:
            bad = self.provider.call("POST", "/run", json=self._request(wrong_body, "invalid"))
            if 200 <= bad.status < 300 and isinstance(bad.document, dict):
                self._adopt(bad.document)
            good = bad.status == 400 and bad.is_error_document()
            self.record(
                "run.invalid_body", PASS if good else FAIL,
                f"a body the input schema refuses ({_compact(wrong_body)}): expected 400 JSON "
                f"{{code, description}}, got {bad.brief()}",
            )
        return status

    def conflict(self, body: dict[str, Any], request: dict[str, Any]) -> None:
        others = [b for b in example_bodies(self.description.get("input_schema")) if b != body]
        if others:
            changed, what = {**request, "body": others[0]}, "another body"
        else:
            changed, what = {**request, "label": f"{LABEL} (changed)"}, "another label"
        answer = self.provider.call("POST", "/run", json=changed)
        if 200 <= answer.status < 300 and isinstance(answer.document, dict):
            self._adopt(answer.document)
        message = (
            f"the same request_id with {what}: expected 409, got {answer.brief()}"
        )
        if answer.status == 409 and answer.is_error_document():
            self.record("run.conflict", PASS, message)
        elif answer.status >= 500 or (answer.status >= 400 and not answer.is_error_document()):
            self.record("run.conflict", FAIL, message)
        else:
            self.record("run.conflict", WARN, message + " (the spec does not require 409)")

    # --- status, release and cancel while running --------------------------------

    def status_paths(self, action_id: str) -> None:
        answers = [self.provider.call(m, p) for m, p in routes(action_id)["status"]]
        problems = [
            f"{a.what}: {a.brief() if a.status != 200 else 'not a JSON object'}"
            for a in answers
            if a.status != 200 or not isinstance(a.document, dict)
        ]
        if not problems:
            old, new = (a.document for a in answers)
            for key in ("action_id", "creator_id"):
                if old.get(key) != new.get(key):
                    problems.append(f"{key} {old.get(key)!r} vs {new.get(key)!r}")
            # Between the two reads, the action may have completed; nothing else.
            if old.get("status") != new.get("status") and new.get("status") not in TERMINAL:
                problems.append(f"status {old.get('status')} vs {new.get('status')}")
        if problems:
            self.record(
                "status.paths", FAIL,
                "GET /ID/status and GET /actions/ID: expected the same action, got "
                + "; ".join(problems[:2]),
            )
        else:
            self.started[action_id] = answers[-1].document
            self.record("status.paths", PASS, "GET /ID/status and GET /actions/ID agree")

    def _running(self, action_id: str) -> bool | None:
        """Whether the action is still running (None: cannot tell)."""
        answer = self.provider.call("GET", routes(action_id)["status"][0][1])
        if answer.status != 200 or not isinstance(answer.document, dict):
            return None
        self.started[action_id] = answer.document
        return answer.document.get("status") in ("ACTIVE", "INACTIVE")

    def release_running(self, action_id: str) -> None:
        if not self._running(action_id):
            self.skip("release.running", "the action completed before it could be released")
            return
        answer = self.provider.call("POST", routes(action_id)["release"][0][1])
        if answer.status == 200:
            self.released.add(action_id)
        good = answer.status == 409 and answer.is_error_document()
        still = self._running(action_id)
        if answer.status == 200 and still is False:  # it finished meanwhile: fair
            self.skip("release.running", "the action completed while being released")
            return
        self.record(
            "release.running", PASS if good else FAIL,
            f"release of a running action: expected 409 JSON, got {answer.brief()}",
        )

    def resume(self, action_id: str) -> None:
        running = self._running(action_id)
        answers = [self.provider.call(m, p) for m, p in routes(action_id)["resume"]]
        if all(route_missing(a) for a in answers):
            self.skip(
                "resume.running",
                f"the provider has no resume (POST /ID/resume answered {answers[0].brief()})",
            )
            return
        wrong = []
        for answer in answers:
            if answer.status == 200 and not status_problem(answer.document, action_id):
                continue
            if answer.status == 409 and answer.is_error_document() and running is not True:
                continue  # resuming a completed action
            wrong.append(f"{answer.what}: {answer.brief()}")
        self.record(
            "resume.running", FAIL if wrong else PASS,
            "resume of a running action: expected 200 and its status"
            + (f", got {wrong[0]}" if wrong else " on both paths"),
        )

    def log(self, action_id: str) -> None:
        if self.description.get("log_supported") is not True:
            self.skip("log.supported", "log_supported is not true")
            return
        wrong = []
        for method, path in routes(action_id)["log"]:
            answer = self.provider.call(method, path)
            entries = answer.document.get("entries") if isinstance(answer.document, dict) else None
            if answer.status != 200 or not isinstance(entries, list):
                wrong.append(f"{answer.what}: {answer.brief()}")
        self.record(
            "log.supported", FAIL if wrong else PASS,
            "log_supported is true: expected 200 with a list of entries"
            + (f", got {wrong[0]}" if wrong else " on both paths"),
        )

    # --- enumeration -------------------------------------------------------------

    def _enumerate(self, caller: str, **params: Any) -> Answer:
        return self.provider.call(
            "GET", "/actions", caller=caller,
            params={"status": "active,inactive,succeeded,failed", **params},
        )

    def enumeration(self, action_id: str, second: dict[str, Any] | None) -> None:
        answer = self._enumerate(A)
        if route_missing(answer):
            self.skip(("enumerate.lists", "enumerate.paging"),
                      f"the provider does not enumerate (GET /actions: {answer.brief()})")
            return
        listed = _action_ids(answer.document)
        if answer.status != 200 or listed is None:
            self.record("enumerate.lists", FAIL,
                        f"GET /actions: expected 200 and a page of actions, got {answer.brief()}")
            self.skip("enumerate.paging", "enumerate.lists failed")
            return
        if action_id in listed:
            self.record("enumerate.lists", PASS, "GET /actions lists the action just started")
        else:
            self.record(
                "enumerate.lists", FAIL,
                f"GET /actions: expected the action just started in the list, got "
                f"{len(listed)} actions without it",
            )
        if not isinstance(answer.document, dict) or "has_next_page" not in answer.document:
            self.skip("enumerate.paging", "GET /actions has no paging (no has_next_page)")
            return
        wanted = {action_id} | ({second["action_id"]} if second else set())
        seen: list[str] = []
        marker = None
        problem = None
        pages = 0
        for pages in range(1, 101):  # noqa: B007 (the count is reported)
            page = self._enumerate(A, limit=1, **({"marker": marker} if marker else {}))
            ids = _action_ids(page.document)
            if page.status != 200 or ids is None:
                problem = f"a page answered {page.brief()}"
                break
            if len(ids) > 1:
                problem = f"limit=1 gave {len(ids)} actions"
                break
            seen += ids
            marker = page.document.get("marker")
            if not page.document.get("has_next_page") or not marker:
                break
        missing = wanted - set(seen)
        if problem is None and missing:
            problem = f"pages without {sorted(missing)[0]}"
        if problem is None and len(seen) != len(set(seen)):
            problem = "an action came twice"
        if problem:
            self.record(
                "enumerate.paging", FAIL,
                f"paging GET /actions (limit=1, marker): expected each action once, got {problem}",
            )
        else:
            self.record(
                "enumerate.paging", PASS, f"paging GET /actions (limit=1, marker): {pages} pages"
            )

    # --- a second caller ---------------------------------------------------------

    def isolation(self, action_id: str, second: dict[str, Any] | None) -> None:
        if not self.has_other:
            self.skip(("other.isolation", "other.enumerate"), "no --other-token given")
            return
        target = second["action_id"] if second else action_id
        wrong = []
        calls = [r for name, paths in routes(target).items() for r in paths
                 if name != "log" or self.description.get("log_supported") is True]
        for method, path in calls:
            answer = self.provider.call(method, path, caller=B)
            if answer.status == 404 and answer.error_code() != "NotFound":
                continue
            if route_missing(answer) and "resume" in path:
                continue
            wrong.append(f"{answer.what}: {answer.brief()}")
        who = "the other caller, on another's action"
        if wrong:
            self.record(
                "other.isolation", FAIL,
                f"{who}: expected 404 on every route, got {wrong[0]}"
                + (f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""),
            )
        else:
            self.record("other.isolation", PASS, f"{who}: 404 on all {len(calls)} routes")
        answer = self._enumerate(B)
        if route_missing(answer):
            self.skip("other.enumerate", "the provider does not enumerate")
            return
        listed = _action_ids(answer.document)
        if answer.status != 200 or listed is None:
            self.record("other.enumerate", FAIL,
                        f"GET /actions as the other caller: expected 200, got {answer.brief()}")
            return
        theirs = set(listed) & set(self.started)
        self.record(
            "other.enumerate", FAIL if theirs else PASS,
            "the other caller's GET /actions lists none of our actions"
            if not theirs
            else f"the other caller's GET /actions: expected none of ours, got {sorted(theirs)[0]}",
        )

    # --- cancel, completion, release ---------------------------------------------

    def cancel_running(self, second: dict[str, Any] | None) -> None:
        if second is None:
            self.skip("cancel.running", "a second action could not be started")
            return
        action_id = second["action_id"]
        if not self._running(action_id):
            self.skip("cancel.running", "the action completed before it could be cancelled")
            return
        answer = self.provider.call("POST", routes(action_id)["cancel"][0][1])
        if answer.status == 200:
            problem = status_problem(answer.document, action_id)
            good, got = not problem, "200" + (f" but {problem}" if problem else "")
        else:
            good, got = answer.status == 409 and answer.is_error_document(), answer.brief()
        self.record(
            "cancel.running", PASS if good else FAIL,
            f"cancel of a running action: expected 200 (its status) or 409, got {got}",
        )

    def completes(self, action_id: str) -> dict[str, Any] | None:
        deadline = time.monotonic() + self.wait_seconds
        delay = 0.5
        polls = 0
        while True:
            answer = self.provider.call("GET", routes(action_id)["status"][0][1])
            polls += 1
            if answer.status in (429, 503):
                retry = _retry_after(answer)
                wait = retry if retry is not None else delay
            elif answer.status != 200 or status_problem(answer.document, action_id):
                problem = status_problem(answer.document, action_id) if answer.status == 200 else None
                self.record(
                    "status.completes", FAIL,
                    f"polling the action: expected 200 and its status, got {answer.brief()}"
                    + (f"; {problem}" if problem else ""),
                )
                return None
            else:
                status = answer.document
                self.started[action_id] = status
                state = status.get("status")
                if state in TERMINAL:
                    self.record(
                        "status.completes", PASS, f"reached {state} after {polls} polls",
                    )
                    return status
                if state == "INACTIVE":
                    self.record("status.completes", WARN,
                                "the action is INACTIVE: it waits for someone to act")
                    return None
                wait = delay
            left = deadline - time.monotonic()
            if left <= 0:
                self.record(
                    "status.completes", WARN,
                    f"still running after {self.wait_seconds:g} s (check --timeout): "
                    "not checked to the end",
                )
                return None
            self.sleep(min(wait, left))
            delay = min(delay * 1.5, 5.0)

    def after_completion(
        self, action_id: str, final: dict[str, Any] | None, body: dict[str, Any]
    ) -> None:
        later = ("cancel.completed", "release.completed", "release.gone",
                 "release.request_id_reusable")
        if final is None:
            self.skip(later, "the action did not complete (status.completes)")
            return
        answer = self.provider.call("POST", routes(action_id)["cancel"][0][1])
        self.record(
            "cancel.completed", PASS if answer.status == 409 and answer.is_error_document()
            else FAIL,
            f"cancel of a completed action: expected 409 JSON, got {answer.brief()}",
        )
        released = self.provider.call("POST", routes(action_id)["release"][0][1])
        problem = status_problem(released.document, action_id) if released.status == 200 else None
        if released.status == 200:
            self.released.add(action_id)
        if problem is None and released.status == 200:
            state = released.document.get("status")
            problem = None if state in TERMINAL else f"status {state}, not a final one"
        self.record(
            "release.completed", PASS if released.status == 200 and not problem else FAIL,
            f"release of a completed action: expected 200 and its final status, got "
            f"{released.brief()}" + (f"; {problem}" if problem else ""),
        )
        if released.status != 200:
            self.skip(later[2:], "release.completed failed")
            return
        gone = [self.provider.call(m, p) for m, p in routes(action_id)["status"]]
        wrong = [g for g in gone if not (g.status == 404 and g.is_error_document())]
        self.record(
            "release.gone", FAIL if wrong else PASS,
            "status of a released action: expected 404 JSON on both paths"
            + (f", got {wrong[0].what}: {wrong[0].brief()}" if wrong else ""),
        )
        again = self.provider.call("POST", "/run", json=self.request)
        document = again.document if isinstance(again.document, dict) else {}
        if 200 <= again.status < 300:
            self._adopt(document)
        new = document.get("action_id") not in (None, action_id)
        self.record(
            "release.request_id_reusable", PASS if again.status == 202 and new else FAIL,
            f"its request_id again after release: expected 202 and a new action, got "
            f"{again.brief()}" + ("" if new or again.status >= 300 else " with the released id"),
        )

    def unknown_action(self) -> None:
        fake = f"ap-client-check-unknown-{uuid.uuid4()}"
        wrong = []
        for method, path in routes(fake)["status"]:
            answer = self.provider.call(method, path)
            if not (answer.status == 404 and answer.is_error_document()):
                wrong.append(f"{answer.what}: {answer.brief()}")
        self.record(
            "unknown.action", FAIL if wrong else PASS,
            "an unknown action id: expected 404 JSON on both paths"
            + (f", got {wrong[0]}" if wrong else ""),
        )

    # --- cleaning up -------------------------------------------------------------

    def _clean_up(self) -> None:
        """Cancel what still runs, then release everything this run started."""
        for action_id in list(self.started):
            if action_id in self.released:
                continue
            try:
                if self._running(action_id):
                    self.provider.call("POST", routes(action_id)["cancel"][0][1])
                for _ in range(20):
                    if self._running(action_id) is not True:
                        break
                    self.sleep(0.25)
                answer = self.provider.call("POST", routes(action_id)["release"][0][1])
            except Unreachable:
                self.left_behind.append(action_id)
                continue
            if answer.status == 200 or answer.status == 404:
                self.released.add(action_id)
            else:
                self.left_behind.append(action_id)


def status_problem(document: Any, action_id: str) -> str | None:
    """Why ``document`` is not a status of ``action_id`` (None: it is). Whether it is
    fully spec-valid is run.accepted's check, so it is reported once."""
    if not isinstance(document, dict):
        return "not a JSON object"
    if document.get("action_id") != action_id:
        return f"action_id {document.get('action_id')!r}, not {action_id!r}"
    state = document.get("status")
    if state not in ("ACTIVE", "INACTIVE", *TERMINAL):
        return f"status {state!r} is none of ACTIVE, INACTIVE, SUCCEEDED, FAILED"
    return None


def _action_ids(document: Any) -> list[str] | None:
    items = document.get("actions") if isinstance(document, dict) else document
    if not isinstance(items, list):
        return None
    return [a["action_id"] for a in items if isinstance(a, dict) and "action_id" in a]


def _retry_after(answer: Answer) -> float | None:
    try:
        return min(max(float(answer.headers.get("Retry-After", "")), 0.0), 30.0)
    except ValueError:
        return None


def _first(schema: str, found: list[str]) -> str:
    more = f" (and {len(found) - 2} more)" if len(found) > 2 else ""
    return f"expected a valid {schema}, got {'; '.join(found[:2])}{more}"


def _compact(document: Any, limit: int = 60) -> str:
    text = json.dumps(document, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"

