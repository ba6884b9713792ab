"""What the user sees: documents as compact lines or tables, errors as one line, progress.

Results go to stdout; progress, hints and errors to stderr. With --json the
provider's documents are printed as they came.
"""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

import globus_sdk
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn

from ap_client.waiting import estimated_completion, parse_time

STATUS_FIELDS = (
    "action_id", "status", "display_status", "label", "creator_id", "start_time",
    "completion_time", "release_after", "monitor_by", "manage_by",
)
INTROSPECTION_FIELDS = (
    "title", "subtitle", "description", "globus_auth_scope", "api_version", "types",
    "synchronous", "log_supported", "maximum_deadline", "keywords", "admin_contact",
    "administered_by", "runnable_by", "visible_to",
)


def as_json(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=False)


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value) if value else "-"
    return json.dumps(value)


def _lines(document: dict[str, Any], order: tuple[str, ...]) -> list[tuple[str, str]]:
    keys = [k for k in order if k in document]
    keys += [k for k in document if k not in order and k not in ("details", "input_schema")]
    return [(k, _value(document[k])) for k in keys if document[k] is not None]


def _aligned(pairs: list[tuple[str, str]], indent: str = "") -> list[str]:
    width = max((len(k) for k, _ in pairs), default=0)
    return [f"{indent}{k.ljust(width)}  {v}" for k, v in pairs]


def render_status(document: dict[str, Any]) -> str:
    lines = _aligned(_lines(document, STATUS_FIELDS))
    details = document.get("details")
    if isinstance(details, dict) and details:
        lines.append("details")
        lines += _aligned([(k, _value(v)) for k, v in details.items()], indent="  ")
    elif details not in (None, {}):
        lines.append(f"details  {_value(details)}")
    return "\n".join(lines)


def render_introspection(document: dict[str, Any]) -> str:
    lines = _aligned(_lines(document, INTROSPECTION_FIELDS))
    if "input_schema" in document:
        lines.append("input_schema")
        lines += ["  " + line for line in as_json(document["input_schema"]).splitlines()]
    return "\n".join(lines)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(out)


def render_actions(actions: list[dict[str, Any]]) -> str:
    if not actions:
        return "(no actions)"
    rows = [
        [
            str(a.get("action_id", "")), str(a.get("status", "")),
            str(a.get("start_time", "")), str(a.get("label") or ""),
        ]
        for a in actions
    ]
    return _table(["ACTION_ID", "STATUS", "START_TIME", "LABEL"], rows)


def render_log(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "(no log entries)"
    rows = [
        [str(e.get("time", "")), str(e.get("code", "")), str(e.get("description", ""))]
        for e in entries
    ]
    return _table(["TIME", "CODE", "DESCRIPTION"], rows)


def emit(text: str) -> None:
    print(text, file=sys.stdout, flush=True)


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- errors -----------------------------------------------------------------


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def api_error_line(error: globus_sdk.GlobusAPIError) -> str:
    """'404 ActionNotFound: <the provider's description>' (+ Retry-After, if any)."""
    document = error.raw_json if isinstance(error.raw_json, dict) else {}
    code = document.get("code") or error.http_reason
    description = document.get("description") or document.get("message")
    if not isinstance(description, str) or not description:
        description = error.text if not error.raw_json else json.dumps(document)
    line = f"{error.http_status} {code}: {_one_line(str(description))}"
    retry_after = error.headers.get("Retry-After")
    if retry_after:
        line += f" (retry after {retry_after} s)"
    return line


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\"()\]]+)")


def network_error_line(error: globus_sdk.NetworkError, url: str) -> str:
    if isinstance(error, globus_sdk.GlobusTimeoutError):
        reason = "timed out"
    else:
        found = _ERRNO.search(str(error.underlying_exception))
        reason = (
            found.group(1).strip().lower() if found else type(error.underlying_exception).__name__
        )
    return f"could not reach {url}: {reason}"


# --- progress ---------------------------------------------------------------


HINT = "Ctrl-C stops waiting; the action keeps running"


class ProgressDisplay:
    """Progress of one action on stderr. On a terminal: a rich progress bar
    toward estimated_completion_time when the provider gives one (a pulsing bar
    when not), as wide as the terminal. Without a terminal, one line per status
    change instead."""

    FRAME_SECONDS = 0.1

    def __init__(self, action_id: str, stream: TextIO | None = None) -> None:
        self.action_id = action_id
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.status: dict[str, Any] = {}
        self._said: str | None = None
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def update(self, status: dict[str, Any]) -> None:
        self.status = status
        state = str(status.get("status", "?"))
        if self.interactive:
            if self._said is None:
                self._write(f"Waiting for {self.action_id}\n{HINT}\n")
            self._draw()
        elif state != self._said:
            eta = estimated_completion(status)
            when = f", estimated completion {eta.isoformat()}" if eta else ""
            hint = f" ({HINT})" if self._said is None else ""
            self._write(f"{self.action_id}: {state}{when}{hint}\n")
        self._said = state

    def sleep(self, seconds: float) -> None:
        if not self.interactive:
            time.sleep(seconds)
            return
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(self.FRAME_SECONDS, left))
            self._draw()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()  # transient: the bar's line is cleared
            self._bar = None

    def _draw(self) -> None:
        if self._bar is None:
            console = Console(file=self.stream, highlight=False)
            self._bar = Progress(
                SpinnerColumn(),
                BarColumn(bar_width=None),
                TextColumn("{task.fields[info]}"),
                TextColumn("{task.fields[state]}"),
                console=console,
                auto_refresh=False,  # redrawn from sleep(): no thread of its own
                transient=True,
                expand=True,
            )
            self._bar.start()
            self._task = self._bar.add_task("", total=None, info="", state="")
        assert self._task is not None
        now = datetime.now(UTC)
        state = str(self.status.get("status", "?"))
        eta = estimated_completion(self.status)
        start = parse_time(self.status.get("start_time"))
        if eta and start and eta > start:
            total = (eta - start).total_seconds()
            done = min(max((now - start).total_seconds(), 0.0), total)
            left = max((eta - now).total_seconds(), 0)
            info = f"{done / total:4.0%} {_duration(left)} left"
            self._bar.update(self._task, total=total, completed=done, info=info, state=state)
        else:
            elapsed = (now - start).total_seconds() if start else 0.0
            info = f"{_duration(elapsed)} elapsed"
            self._bar.update(self._task, total=None, info=info, state=state)
        self._bar.refresh()

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
