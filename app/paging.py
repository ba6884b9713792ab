"""Query parameters of the list routes (GET /actions, GET .../log) and their
opaque paging markers.

Unknown filter values are a 400, unlike the library's ``parse_query_args``,
which drops them silently and falls back to the default: there a typo such as
``status=faild`` quietly lists the *active* actions, an answer to a question
the caller did not ask.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from globus_action_provider_tools.flask.exceptions import BadActionRequest
from werkzeug.datastructures import MultiDict

from app.store.base import ROLES, STATUSES

ENUMERATE_DEFAULT_LIMIT = 50
ENUMERATE_MAX_LIMIT = 200
LOG_DEFAULT_LIMIT = 10
LOG_MAX_LIMIT = 100


@dataclass(frozen=True)
class EnumerationQuery:
    statuses: frozenset[str]  # upper case, as in STATUSES
    roles: frozenset[str]  # a subset of ROLES
    limit: int
    after: tuple[datetime, str] | None


@dataclass(frozen=True)
class LogQuery:
    limit: int
    offset: int


def enumeration_query(args: MultiDict[str, str]) -> EnumerationQuery:
    statuses = _choices(args, "status", "active", {s.lower() for s in STATUSES})
    roles = _choices(args, "roles", "creator_id", set(ROLES))
    marker = _marker(args)
    after = None
    if marker is not None:
        if not (
            isinstance(marker, list)
            and len(marker) == 2
            and all(type(v) is str for v in marker)
            and "\x00" not in marker[1]  # no action id has one (nor can PostgreSQL compare it)
        ):
            raise _bad_marker()
        try:
            start_time = datetime.fromisoformat(marker[0])
            if start_time.tzinfo is None:
                raise ValueError("naive")
            after = (start_time.astimezone(UTC), marker[1])  # as every store keeps times
        except (ValueError, OverflowError):
            raise _bad_marker() from None
    return EnumerationQuery(
        statuses=frozenset(s.upper() for s in statuses),
        roles=frozenset(roles),
        limit=_limit(args, ENUMERATE_DEFAULT_LIMIT, ENUMERATE_MAX_LIMIT),
        after=after,
    )


def log_query(args: MultiDict[str, str]) -> LogQuery:
    marker = _marker(args)
    if marker is not None and (type(marker) is not int or marker < 0):
        raise _bad_marker()
    return LogQuery(limit=_limit(args, LOG_DEFAULT_LIMIT, LOG_MAX_LIMIT), offset=marker or 0)


def encode_marker(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def enumeration_marker(start_time: datetime, action_id: str) -> str:
    return encode_marker([start_time.isoformat(), action_id])


def _choices(args: MultiDict[str, str], name: str, default: str, valid: set[str]) -> set[str]:
    """Comma-separated, case-insensitive values of ``name`` (repeats allowed)."""
    values = {
        item.strip().casefold() for value in args.getlist(name) for item in value.split(",")
    } - {""}
    if not values:
        return {default}
    if not values <= valid:
        raise BadActionRequest(
            f"Query parameter '{name}': unknown value; use one or more of "
            f"{', '.join(sorted(valid))}, comma-separated"
        )
    return values


def _limit(args: MultiDict[str, str], default: int, maximum: int) -> int:
    """``limit``: a positive integer; larger than ``maximum`` means ``maximum``."""
    text = args.get("limit", "")
    if text == "":
        return default
    digits = text.lstrip("0")
    if not (text.isascii() and text.isdigit()) or not digits:
        raise BadActionRequest(f"Query parameter 'limit': must be an integer from 1 to {maximum}")
    return maximum if len(digits) > len(str(maximum)) else min(int(digits), maximum)


def _marker(args: MultiDict[str, str]) -> Any:
    text = args.get("marker", "")
    if text == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        raise _bad_marker() from None


def _bad_marker() -> BadActionRequest:
    return BadActionRequest(
        "Query parameter 'marker': not a marker this provider issued; "
        "use the 'marker' of the previous page"
    )
