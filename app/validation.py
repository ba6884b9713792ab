"""Validation of run requests: strict JSON, the official ActionRequest schema
(from the bundled copy of the Actions API spec) with this provider's bounds
(``RequestBounds``), then ``schema.json`` for the body. Every rejection is a
400 naming the field (and the bound it is over), without echoing its value.

jsonschema decides and words every rejection. A compiled fastjsonschema
validator of the same schema answers first (fast path, see
bench/README.md#compiled-validator): when it accepts, jsonschema is not asked.
That is sound only while it never accepts what jsonschema rejects:
tests/test_validation_parity.py checks the pair.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
import pydantic
import yaml
from globus_action_provider_tools.data_types import ActionRequest
from globus_action_provider_tools.flask.exceptions import BadActionRequest

from app.errors import echo

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


def parse_json(data: bytes) -> Any:
    """Parse a request body as strict JSON (no NaN, no Infinity, no overflow,
    no lone surrogates, no NUL characters)."""
    try:
        document = json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else "invalid"
        raise BadActionRequest(f"The request body is not valid JSON ({reason})") from None
    _check_strings(document)
    return document


def _check_strings(document: Any) -> None:
    """Refuse strings no store can keep: a lone surrogate ("\\ud800" parses,
    but is no Unicode text) or a NUL ("\\u0000" is valid JSON, but PostgreSQL
    cannot store it in text; refused in every store alike)."""
    pending = [document]
    while pending:
        node = pending.pop()
        if isinstance(node, str):
            if "\x00" in node:
                raise BadActionRequest("The request body has a NUL character (\\u0000) in a string")
            try:
                node.encode()
            except UnicodeEncodeError:
                raise BadActionRequest(
                    "The request body is not valid JSON (a string has an unpaired surrogate)"
                ) from None
        elif isinstance(node, dict):
            pending.extend(node.keys())
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)


def load_input_schema() -> dict[str, Any]:
    return json.loads(INPUT_SCHEMA_PATH.read_text())


@dataclass(frozen=True)
class RequestBounds:
    """How large the parts of a run request around its body may be: the
    settings of the same names (config.py says why each default)."""

    max_request_id_length: int = 256  # characters
    max_principals: int = 64  # in monitor_by, and in manage_by
    max_tags: int = 32
    max_tag_bytes: int = 256  # UTF-8

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RequestBounds:
        return cls(
            max_request_id_length=int(config["MAX_REQUEST_ID_LENGTH"]),
            max_principals=int(config["MAX_PRINCIPALS"]),
            max_tags=int(config["MAX_TAGS"]),
            max_tag_bytes=int(config["MAX_TAG_BYTES"]),
        )


def action_request_schema(bounds: RequestBounds) -> dict[str, Any]:
    """The spec's ActionRequest schema (label of 1 to 64 characters, monitor_by
    and manage_by without repeats), with this provider's additions: a bounded,
    non-empty request_id, at most ``max_principals`` in monitor_by and in
    manage_by, and ``tags`` (sent by the globus-automate ActionClient, accepted
    and ignored), at most ``max_tags`` strings. A tag's bytes are checked
    after the schema (``_check_tag_bytes``): JSON Schema counts characters."""
    spec = yaml.safe_load(SPEC_PATH.read_text())
    components = spec["components"]
    schema = copy.deepcopy(components["schemas"]["ActionRequest"])
    properties = schema["properties"]
    properties["request_id"].update(minLength=1, maxLength=bounds.max_request_id_length)
    for name in ("monitor_by", "manage_by"):
        properties[name]["maxItems"] = bounds.max_principals
    properties["tags"] = {
        "type": "array", "maxItems": bounds.max_tags, "items": {"type": "string"}
    }
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

    def __init__(self, bounds: RequestBounds | None = None, *, compiled: bool = True) -> None:
        self.bounds = bounds or RequestBounds()
        request_schema = action_request_schema(self.bounds)
        self._request = SchemaChecker(
            request_schema, jsonschema.FormatChecker(), compiled=compiled
        )
        self.input_schema = load_input_schema()
        self._body = SchemaChecker(self.input_schema, compiled=compiled)

    def validate(self, document: Any) -> ActionRequest:
        self._request.raise_errors(document, "$")
        _check_tag_bytes(document.get("tags", ()), self.bounds.max_tag_bytes)
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


def _unexpected(error: jsonschema.ValidationError) -> str:
    """The first property the schema does not allow (a client's name, so cut
    short), and how many more there are."""
    known = error.schema.get("properties", {})
    extra = [name for name in error.instance if name not in known]
    more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
    return f"unexpected property {echo(extra[0], quote=True)}{more}"


def _check_tag_bytes(tags: list[str], limit: int) -> None:
    for index, tag in enumerate(tags):
        if len(tag) > limit or len(tag.encode()) > limit:  # the first test is the cheap one
            raise BadActionRequest(
                f"Field '$.tags[{index}]' (category: 'maxLength'): "
                f"is longer than {limit} bytes (UTF-8)"
            )


def _compile_fast(schema: dict[str, Any]) -> Any:
    """A fastjsonschema validator of ``schema``, ``format`` left out: jsonschema
    checks none of the formats in our two schemas (date-time, uri: their
    checkers are not installed)."""
    return fastjsonschema.compile(schema, use_default=False, use_formats=False)


def _raise_errors(validator: jsonschema.Draft7Validator, instance: Any, root: str) -> None:
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        raise BadActionRequest("; ".join(_describe(e, root) for e in errors[:MAX_ERRORS]))


def _describe(error: jsonschema.ValidationError, root: str) -> str:
    path = root + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    if error.validator == "required":
        detail = error.message  # names one of our properties
    elif error.validator == "additionalProperties":
        detail = _unexpected(error)
    elif error.validator in ("oneOf", "anyOf") and "description" in error.schema:
        detail = f"must be {error.schema['description']}"
    elif error.validator in _BOUNDS:
        detail = _BOUNDS[str(error.validator)].format(bound=error.validator_value)
    else:
        detail = _EXPECTATIONS.get(str(error.validator), "is not valid")
    return f"Field '{path}' (category: '{error.validator}'): {detail}"[:MAX_MESSAGE]


_EXPECTATIONS = {
    "type": "has the wrong type",
    "pattern": "does not have the required format",
    "format": "does not have the required format",
    "uniqueItems": "has duplicate items",
    "minimum": "is too small",
    "maximum": "is too large",
}
# Bounds a value is over, named with the bound (client values are not echoed).
_BOUNDS = {
    "minLength": "must be at least {bound} character(s) long",
    "maxLength": "is longer than {bound} characters",
    "maxItems": "has more than {bound} items",
}
