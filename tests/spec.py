"""Validate documents against the official Actions API spec (bundled copy)."""

from __future__ import annotations

from typing import Any

import jsonschema
import yaml

from app.validation import SPEC_PATH

_SPEC = yaml.safe_load(SPEC_PATH.read_text())


def assert_conforms(document: Any, schema_name: str) -> None:
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": _SPEC["components"]}
    jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker()).validate(document)
