"""Validation of run requests: strict JSON, the official ActionRequest schema
(from the bundled copy of the Actions API spec), then ``schema.json`` for the
body. Every rejection is a 400 naming the field, without echoing its value.

jsonschema decides and words every rejection. A compiled fastjsonschema
validator of the same schema answers first: when it accepts, jsonschema is not
asked; when it rejects, jsonschema runs as before. That is only sound while
the compiled validator never accepts what jsonschema rejects:
tests/test_validation_parity.py checks the pair on tricky and generated inputs.
"""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
import orjson
import pydantic
import yaml
from globus_action_provider_tools.data_types import ActionRequest
from globus_action_provider_tools.flask.exceptions import BadActionRequest

SPEC_PATH = Path(__file__).parent / "spec" / "actions_spec.openapi.yaml"
INPUT_SCHEMA_PATH = Path(__file__).parent / "schema.json"  # the top-level schema.json (a link)
MAX_ERRORS = 5
MAX_MESSAGE = 200


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


# orjson parses a body the same as the stdlib path below unless it has big
# integers (orjson makes floats of those past 64 bits), deep nesting (orjson
# stops at 1,024 levels, the stdlib at the recursion limit) or escaped NULs
# (allowed by both, refused here): such bodies skip it. Everything orjson
# refuses (NaN, Infinity, 1e400, lone surrogates, invalid UTF-8, a BOM, UTF-16)
# goes to the stdlib path too, which accepts the same or words the refusal.
_FAST_MAX_BYTES = 16_384
_FAST_MAX_OPENINGS = 64  # "[" and "{" bytes, in strings or not
_LONG_DIGITS = re.compile(rb"[0-9]{19}")  # 10**18 and more: maybe past 64 bits


def parse_json(data: bytes) -> Any:
    """Parse a request body as strict JSON (no NaN, no Infinity, no overflow,
    no lone surrogates, no NUL characters)."""
    if (
        len(data) <= _FAST_MAX_BYTES
        and data.count(b"[") + data.count(b"{") <= _FAST_MAX_OPENINGS
        and b"\\u0000" not in data
        and _LONG_DIGITS.search(data) is None
    ):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # the stdlib path decides, and says why
    return parse_json_stdlib(data)


def parse_json_stdlib(data: bytes) -> Any:
    """parse_json without the orjson front: the authority on every body."""
    try:
        document = json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else "invalid"
        raise BadActionRequest(f"The request body is not valid JSON ({reason})") from None
    try:
        # "\ud800"-style escapes of lone surrogates parse, but are no Unicode
        # text: no store (PostgreSQL) or log could encode them later.
        text = json.dumps(document, ensure_ascii=False)
        text.encode()
    except RecursionError:
        raise BadActionRequest("The request body is not valid JSON (nested too deeply)") from None
    except UnicodeEncodeError:
        raise BadActionRequest(
            "The request body is not valid JSON (a string has an unpaired surrogate)"
        ) from None
    # "\u0000" is valid JSON, but PostgreSQL cannot store a NUL in text:
    # refuse it in every store alike. (dumps escapes NUL, so ``text`` has no raw one.)
    if "\\u0000" in text and _has_nul(document):
        raise BadActionRequest("The request body has a NUL character (\\u0000) in a string")
    return document


def _has_nul(document: Any) -> bool:
    pending = [document]
    while pending:
        node = pending.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return True
        elif isinstance(node, dict):
            pending.extend(node.keys())
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return False


def load_input_schema() -> dict[str, Any]:
    return json.loads(INPUT_SCHEMA_PATH.read_text())


def action_request_schema(max_request_id_length: int) -> dict[str, Any]:
    """The spec's ActionRequest schema, with this provider's two additions:
    a bounded, non-empty request_id, and ``tags`` (sent by the globus-automate
    ActionClient), accepted and ignored."""
    spec = yaml.safe_load(SPEC_PATH.read_text())
    components = spec["components"]
    schema = copy.deepcopy(components["schemas"]["ActionRequest"])
    schema["properties"]["request_id"].update(minLength=1, maxLength=max_request_id_length)
    schema["properties"]["tags"] = {"type": "array", "items": {"type": "string"}}
    schema["components"] = components  # so that "#/components/..." refs resolve
    return schema


class SchemaChecker:
    """One schema: jsonschema (the authority), fronted by a compiled validator."""

    def __init__(
        self,
        schema: dict[str, Any],
        format_checker: jsonschema.FormatChecker | None = None,
        *,
        compiled: bool = True,
    ) -> None:
        self.validator = jsonschema.Draft7Validator(schema, format_checker=format_checker)
        self._fast = _compile_fast(schema) if compiled else None

    def raise_errors(self, instance: Any, root: str) -> None:
        if self._fast is not None:
            try:
                self._fast(instance)
                return
            except Exception:  # noqa: S110 - rejected or unsure: jsonschema decides below
                pass
        _raise_errors(self.validator, instance, root)


class RunRequestValidator:
    """Compiled once per app; validates the JSON of one POST /run.

    ``compiled=False`` leaves out the fastjsonschema front (the parity tests
    compare the two).
    """

    def __init__(self, max_request_id_length: int, *, compiled: bool = True) -> None:
        request_schema = action_request_schema(max_request_id_length)
        self._request = SchemaChecker(
            request_schema, jsonschema.FormatChecker(), compiled=compiled
        )
        self.input_schema = load_input_schema()
        self._body = SchemaChecker(self.input_schema, compiled=compiled)

    def validate(self, document: Any) -> ActionRequest:
        self._request.raise_errors(document, "$")
        self._body.raise_errors(document["body"], "$.body")
        try:
            return ActionRequest(**document)
        except OverflowError:  # pydantic's duration parser overflows on huge numbers
            field = "$.release_after" if "release_after" in document else "$"
            raise BadActionRequest(f"Field '{field}': is out of range") from None
        except pydantic.ValidationError as error:
            messages = [
                f"Field '$.{'.'.join(map(str, e['loc']))}': {e['msg']}"
                for e in error.errors()[:MAX_ERRORS]
            ]
            raise BadActionRequest("; ".join(messages)) from None


def _compile_fast(schema: dict[str, Any]) -> Any:
    """A fastjsonschema validator of ``schema``, ``format`` left out: jsonschema
    checks none of the formats in our two schemas (date-time, uri: their
    checkers are not installed). That it accepts only what jsonschema
    accepts is tested on both schemas (tests/test_validation_parity.py).

    Exclusive ``oneOf``s are compiled as ``anyOf`` (below). Measured
    (bench/callgrind.py, run): without the rewrite 947,579 instructions a
    request (8df7205) against 933,474 with it (6e0e4b1): -1.5 %."""
    fast_schema = copy.deepcopy(schema)
    _exclusive_one_of_as_any_of(fast_schema)
    return fastjsonschema.compile(fast_schema, use_default=False, use_formats=False)


# Keywords whose values are JSON documents to compare with, not schemas.
_DATA_KEYWORDS = frozenset({"enum", "const", "examples", "example", "default"})
# JSON types no value has two of ("integer" is a kind of "number").
_TYPE_FAMILY = {"integer": "number", "number": "number", "string": "string",
                "object": "object", "array": "array", "boolean": "boolean", "null": "null"}


def _exclusive_one_of_as_any_of(node: Any) -> None:
    """Rewrite, in place, each ``oneOf`` whose branches each demand one JSON
    type, no two the same (e.g. a number or a string), as ``anyOf``: no value
    can match two such branches, so both accept the same values, and the
    compiled ``anyOf`` stops at the first match where ``oneOf`` tries every
    branch (raising, and catching, an exception for each that fails)."""
    if isinstance(node, list):
        for item in node:
            _exclusive_one_of_as_any_of(item)
        return
    if not isinstance(node, dict):
        return
    branches = node.get("oneOf")
    if isinstance(branches, list) and "anyOf" not in node:
        families = [_type_family(branch) for branch in branches]
        if None not in families and len(set(families)) == len(families):
            node["anyOf"] = node.pop("oneOf")
    for key, value in node.items():
        if key not in _DATA_KEYWORDS:  # values there are instances, not schemas
            _exclusive_one_of_as_any_of(value)


def _type_family(branch: Any) -> str | None:
    kind = branch.get("type") if isinstance(branch, dict) else None
    return _TYPE_FAMILY.get(kind) if isinstance(kind, str) else None


def _raise_errors(validator: jsonschema.Draft7Validator, instance: Any, root: str) -> None:
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        raise BadActionRequest("; ".join(_describe(e, root) for e in errors[:MAX_ERRORS]))


def _describe(error: jsonschema.ValidationError, root: str) -> str:
    path = root + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    if error.validator in ("required", "additionalProperties"):
        detail = error.message  # names properties, never echoes a value
    elif error.validator in ("oneOf", "anyOf") and "description" in error.schema:
        detail = f"must be {error.schema['description']}"
    else:
        detail = _EXPECTATIONS.get(str(error.validator), "is not valid")
    return f"Field '{path}' (category: '{error.validator}'): {detail}"[:MAX_MESSAGE]


_EXPECTATIONS = {
    "type": "has the wrong type",
    "pattern": "does not have the required format",
    "format": "does not have the required format",
    "minLength": "is too short",
    "maxLength": "is too long",
    "uniqueItems": "has duplicate items",
    "minimum": "is too small",
    "maximum": "is too large",
}
