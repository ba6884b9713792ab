"""Bodies to run with: valid ones made from the input schema's examples, and
one the schema refuses (for run.invalid_body)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema


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


def compact(document: Any, limit: int = 60) -> str:
    """A body as one short line of JSON, for a check's message."""
    text = json.dumps(document, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _valid(document: Any, schema: dict[str, Any]) -> bool:
    try:
        validator = jsonschema.validators.validator_for(schema, jsonschema.Draft7Validator)
        return validator(schema).is_valid(document)
    except (jsonschema.SchemaError, TypeError, ValueError):
        return True  # a schema we cannot read: let the provider judge
