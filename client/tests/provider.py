"""A small Actions API provider on the standard library's HTTP server, for
ap-client's own tests (both globus-sdk majors, no Flask).

It follows the spec and what Globus Flows expects, but each rule named in
``breaks`` (a check id of ``ap-client check``) is broken on purpose, so a test
can show that the checker reports exactly that rule as a failure. Three more
names change what it does within the rules: ``accepts-conflicts`` (a reused
request_id with other content is answered like a retry, which the spec
allows), ``minimal`` (no resume, enumeration or log), ``no-examples`` (an
input schema without examples) and ``done-status-202`` (a completed action's
status is answered 202, its document unchanged). Tokens are
plain strings mapped to identities; actions finish ``duration`` seconds after
they start.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ALICE = "urn:globus:auth:identity:00000000-0000-4000-8000-0000000a11ce"
BOB = "urn:globus:auth:identity:00000000-0000-4000-8000-000000000b0b"
CAROL = "urn:globus:auth:identity:00000000-0000-4000-8000-0000000ca201"
TOKENS = {"token-alice": ALICE, "token-bob": BOB, "token-carol": CAROL}
INPUT_SCHEMA = {
    "type": "object",
    "required": ["n"],
    "additionalProperties": False,
    "properties": {"n": {"type": "integer", "examples": [1, 2]}},
}


@dataclass
class Action:
    action_id: str
    request_id: str
    request: dict[str, Any]
    creator: str
    start: datetime
    end: datetime
    cancelled: bool = False
    completed_at: datetime | None = None
    reads: int = 0  # status reads by its creator
    log: list[dict[str, Any]] = field(default_factory=list)


def iso(moment: datetime) -> str:
    return moment.isoformat()


class Provider:
    """State of one provider; ``serve()`` puts it on a loopback port."""

    def __init__(
        self,
        breaks: set[str] | frozenset[str] = frozenset(),
        duration: float = 1.0,
        reads: int | None = None,
    ) -> None:
        """Actions finish ``duration`` seconds after they start or, with ``reads``,
        at that status read by their creator (no waiting, whatever the machine's load)."""
        self.breaks = frozenset(breaks)
        self.duration = timedelta(seconds=duration)
        self.reads = reads
        self.actions: dict[str, Action] = {}
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self.released: set[str] = set()  # request_ids of released actions
        self.bodies: list[Any] = []  # the body of every run request
        self.status_failures = 0  # answer this many status polls with 503 first

    def broken(self, rule: str) -> bool:
        return rule in self.breaks

    @contextmanager
    def serve(self) -> Iterator[str]:
        provider = self

        class Handler(_Handler):
            pass

        Handler.provider = provider
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join()

    # --- documents -------------------------------------------------------

    def description(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "types": ["Action"],
            "api_version": "1.0",
            "title": "Test provider",
            "synchronous": False,
            "log_supported": True,
            "runnable_by": ["all_authenticated_users"],
            "visible_to": ["all_authenticated_users"],
            "globus_auth_scope": "https://auth.globus.org/scopes/test/action_all",
            "admin_contact": "admin@example.org",
            "input_schema": INPUT_SCHEMA,
            "maximum_deadline": "P30D",
        }
        if self.broken("minimal"):
            document["log_supported"] = False
        if self.broken("no-examples"):
            document["input_schema"] = {**INPUT_SCHEMA, "properties": {"n": {"type": "integer"}}}
        if self.broken("introspect.schema"):
            del document["globus_auth_scope"]
            document["synchronous"] = "no"
        return document

    def state(self, action: Action, now: datetime) -> str:
        if action.cancelled:
            return "FAILED"
        if action.completed_at is None:
            if self.reads is not None and action.reads >= self.reads:
                action.completed_at = now
            elif self.reads is None and now >= action.end:
                action.completed_at = action.end
        return "ACTIVE" if action.completed_at is None else "SUCCEEDED"

    def status(self, action: Action, now: datetime) -> dict[str, Any]:
        state = self.state(action, now)
        document: dict[str, Any] = {
            "action_id": action.action_id,
            "status": state,
            "creator_id": action.creator,
            "monitor_by": [action.creator],
            "manage_by": [action.creator],
            "start_time": iso(action.start),
            "release_after": "P30D",
            "display_status": state,
            "details": (
                {"estimated_completion_time": iso(action.end)} if state == "ACTIVE"
                else {"cancelled": True} if action.cancelled else {"n": action.request["body"]["n"]}
            ),
        }
        if action.completed_at is not None:
            document["completion_time"] = iso(action.completed_at)
        if "label" in action.request:
            document["label"] = action.request["label"]
        if self.broken("run.accepted"):
            document["label"] = None
        if self.broken("run.times"):
            document["start_time"] = action.start.strftime("%Y-%m-%dT%H:%M:%S")  # no offset
        return document


ERROR_CODES = {400: "BadActionRequest", 401: "UnauthorizedRequest", 404: "ActionNotFound",
               405: "MethodNotAllowed", 409: "ActionConflict", 503: "ServiceUnavailable"}


class Reply(Exception):
    def __init__(self, status: int, document: Any = None, headers: dict[str, str] | None = None):
        self.status = status
        self.document = document
        self.headers = headers or {}


def error(status: int, description: str, code: str | None = None) -> Reply:
    return Reply(status, {"code": code or ERROR_CODES[status], "description": description})


class _Handler(BaseHTTPRequestHandler):
    provider: Provider
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle's algorithm
        # and delayed ACKs hold every answer back ~40 ms.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_OPTIONS(self) -> None:
        self._serve("OPTIONS")

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.provider.requests.append((method, parts.path))
        try:
            reply = self._route(method, parts.path, parse_qs(parts.query), raw)
        except Reply as answer:
            reply = answer
        body = b"" if reply.document is None else json.dumps(reply.document).encode()
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.document is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _caller(self, rule: str) -> str:
        header = self.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
        if token is None:
            if self.provider.broken("auth.no_token") and rule != "introspect":
                return ALICE
            raise error(401, "no bearer token")
        if token not in TOKENS:
            if self.provider.broken("auth.bad_token") and rule != "introspect":
                return ALICE
            raise error(401, "the token is not valid")
        return TOKENS[token]

    def _route(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> Reply:
        p = self.provider
        if path == "/" and method == "OPTIONS":
            if p.broken("introspect.cors"):
                raise error(405, "no OPTIONS here", "MethodNotAllowed")
            return Reply(204, headers={"Access-Control-Allow-Origin": "*",
                                       "Access-Control-Allow-Methods": "GET, OPTIONS"})
        if path == "/" and method == "GET":
            if p.broken("introspect.no_token") and "Authorization" not in self.headers:
                return Reply(200, p.description())
            self._caller("introspect")
            if p.broken("introspect.ok"):
                return Reply(200, ["not", "a", "description"])
            return Reply(200, p.description())
        if (path, method) in (("/run", "POST"), ("/actions", "POST")):
            return self._run(self._caller("run"), raw)
        if path == "/actions" and method == "GET" and not p.broken("minimal"):
            return self._enumerate(self._caller("enumerate"), query)
        match = re.fullmatch(r"/(?:actions/)?([^/]+)(?:/(status|cancel|release|resume|log))?", path)
        if not match:
            raise error(404, "no such route", "NotFound")
        action_id, verb = match.groups()
        new_style = path.startswith("/actions/")
        operation = {
            (False, "status", "GET"): "status", (True, None, "GET"): "status",
            (False, "cancel", "POST"): "cancel", (True, "cancel", "POST"): "cancel",
            (False, "release", "POST"): "release", (True, None, "DELETE"): "release",
            (False, "resume", "POST"): "resume", (True, "resume", "POST"): "resume",
            (False, "log", "GET"): "log", (True, "log", "GET"): "log",
        }.get((new_style, verb, method))
        if operation is None or (p.broken("minimal") and operation in ("resume", "log")):
            raise error(404, "no such route", "NotFound")
        caller = self._caller(operation)
        now = datetime.now(UTC)
        with p.lock:
            action = p.actions.get(action_id)
            if action is None or (action.creator != caller and not p.broken("other.isolation")):
                if p.broken("unknown.action") and action is None:
                    raise Reply(500, {"error": "KeyError"})
                raise error(404, f"No action with id {action_id}")
            return getattr(self, f"_{operation}")(action, now, new_style)

    def _run(self, caller: str, raw: bytes) -> Reply:
        p = self.provider
        try:
            request = json.loads(raw)
        except ValueError:
            raise error(400, "not JSON") from None
        body = request.get("body") if isinstance(request, dict) else None
        p.bodies.append(body)
        if not isinstance(body, dict) or not isinstance(request.get("request_id"), str):
            raise error(400, "request_id and body are required")
        if not isinstance(body.get("n"), int) or set(body) != {"n"}:
            if p.broken("run.invalid_body"):
                raise Reply(500, {"code": "Oops", "description": "KeyError: n"})
            raise error(400, "body: n must be an integer")
        now = datetime.now(UTC)
        with p.lock:
            for action in p.actions.values():
                if action.creator == caller and action.request_id == request["request_id"]:
                    if p.broken("run.idempotent"):
                        break
                    if action.request != request and not p.broken("accepts-conflicts"):
                        if p.broken("run.conflict"):
                            raise Reply(500, {"code": "Oops", "description": "cannot compare"})
                        raise error(409, "request_id used with other content")
                    return Reply(200, p.status(action, now))
            if p.broken("release.request_id_reusable") and request["request_id"] in p.released:
                raise error(409, "request_id was used before")
            action = Action(str(uuid.uuid4()), request["request_id"], request, caller, now,
                            now + p.duration)
            action.log.append({"time": iso(now), "code": "STARTED", "description": "started"})
            p.actions[action.action_id] = action
            return Reply(202, p.status(action, now))

    def _status(self, action: Action, now: datetime, new_style: bool) -> Reply:
        p = self.provider
        if p.status_failures > 0:
            p.status_failures -= 1
            raise Reply(503, {"code": "ServiceUnavailable", "description": "busy"},
                        {"Retry-After": "0"})
        action.reads += 1
        document = p.status(action, now)
        if p.broken("status.paths") and new_style:
            document["action_id"] = "something-else"
        if p.broken("status.completes") and document["status"] != "ACTIVE":
            document["status"] = "DONE"  # not a status of the spec
        if p.broken("done-status-202") and document["status"] != "ACTIVE":
            return Reply(202, document)
        return Reply(200, document)

    def _cancel(self, action: Action, now: datetime, new_style: bool) -> Reply:
        p = self.provider
        if p.state(action, now) != "ACTIVE":
            if p.broken("cancel.completed"):
                return Reply(200, p.status(action, now))
            raise error(409, "already completed")
        if p.broken("cancel.running"):
            raise Reply(500, {"code": "Oops", "description": "cannot cancel"})
        action.cancelled = True
        action.completed_at = now
        return Reply(200, p.status(action, now))

    def _release(self, action: Action, now: datetime, new_style: bool) -> Reply:
        p = self.provider
        if p.state(action, now) == "ACTIVE" and not p.broken("release.running"):
            raise error(409, "still running")
        if p.broken("release.completed"):
            raise error(400, "cannot release")
        document = p.status(action, now)
        if not p.broken("release.gone"):
            del p.actions[action.action_id]
            p.released.add(action.request_id)
        return Reply(200, document)

    def _resume(self, action: Action, now: datetime, new_style: bool) -> Reply:
        p = self.provider
        if p.state(action, now) != "ACTIVE":
            raise error(409, "already completed")
        if p.broken("resume.running"):
            return Reply(202, {"resumed": True})
        return Reply(200, p.status(action, now))

    def _log(self, action: Action, now: datetime, new_style: bool) -> Reply:
        if self.provider.broken("log.supported"):
            raise error(404, "no logs", "NotFound")
        return Reply(200, {"entries": action.log, "limit": 10, "has_next_page": False,
                           "marker": None})

    def _enumerate(self, caller: str, query: dict[str, list[str]]) -> Reply:
        p = self.provider
        wanted = set(",".join(query.get("status", ["active"])).upper().split(","))
        limit = int(query.get("limit", ["50"])[0])
        start = int(query.get("marker", ["0"])[0])
        now = datetime.now(UTC)
        with p.lock:
            mine = [
                p.status(a, now) for a in p.actions.values()
                if (a.creator == caller or p.broken("other.enumerate"))
                and p.state(a, now) in wanted
            ]
        if p.broken("enumerate.lists"):
            mine = []
        page = mine[start:start + limit]
        more = start + limit < len(mine)
        if p.broken("enumerate.paging"):
            more, page = False, mine
        return Reply(200, {"actions": page, "limit": limit, "has_next_page": more,
                           "marker": str(start + limit) if more else None})
