"""What a check ends as: its stable id (CHECK_IDS, in the order they run and
are reported) and one of pass, fail, warn or skip, with one line saying why."""

from __future__ import annotations

from dataclasses import dataclass

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"

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


@dataclass
class Outcome:
    id: str
    result: str  # PASS, FAIL, WARN (allowed by the spec, or not finished in time) or SKIP
    message: str


def from_to(first: str, last: str) -> tuple[str, ...]:
    """The check ids from ``first`` to ``last``, both included, in order."""
    return CHECK_IDS[CHECK_IDS.index(first) : CHECK_IDS.index(last) + 1]
