"""The official Actions API spec (a bundled copy of actions_spec.openapi.yaml) as
JSON Schema validators.

One deliberate widening: ``visible_to`` also accepts ``all_authenticated_users``.
The spec's PrincipalURN_or_public pattern leaves it out, yet the Action
Provider library's own ActionProviderDescription allows it, Globus Flows
accepts it, and providers use it.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import yaml

SPEC_FILE = "actions_spec.openapi.yaml"
# ISO 8601 times with a UTC offset (or Z), as the spec's date-time means.
ISO_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$", re.IGNORECASE
)


@cache
def spec() -> dict[str, Any]:
    text = resources.files("ap_client.check").joinpath(SPEC_FILE).read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    schemas = document["components"]["schemas"]
    visible_to = schemas["ProviderDescription"]["properties"]["visible_to"]
    visible_to["items"] = {
        "anyOf": [copy.deepcopy(visible_to["items"]), {"const": "all_authenticated_users"}]
    }
    return document


@cache
def _validator(name: str) -> jsonschema.Draft7Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": spec()["components"]}
    return jsonschema.Draft7Validator(schema)


def problems(document: Any, name: str) -> list[str]:
    """What keeps ``document`` from being a valid ``name`` (a spec schema), briefly."""
    found, nulls = [], []
    for error in sorted(_validator(name).iter_errors(document), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in error.absolute_path) or "(document)"
        if error.validator == "type" and error.instance is None:
            nulls.append(where)
        else:
            found.append(f"{where}: {_short(error.message)}")
    if nulls:
        verb = "is" if len(nulls) == 1 else "are"
        found.insert(0, f"{', '.join(nulls)} {verb} null (the spec allows no null there)")
    return found


def time_problems(status: dict[str, Any]) -> list[str]:
    """ActionStatus times that are not ISO 8601 with an offset; release_after not a duration."""
    found = []
    for name in ("start_time", "completion_time"):
        value = status.get(name)
        if value is not None and not (isinstance(value, str) and ISO_TIME.match(value)):
            found.append(f"{name} {value!r} is not an ISO 8601 time with an offset")
    release_after = status.get("release_after")
    duration = spec()["components"]["schemas"]["ISO8601_duration"]["pattern"]
    if release_after is not None and not (
        isinstance(release_after, str) and re.match(duration, release_after)
    ):
        found.append(f"release_after {release_after!r} is not an ISO 8601 duration")
    return found


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
