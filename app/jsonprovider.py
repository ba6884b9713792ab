"""The library's Flask JSON provider, with orjson for responses.

Same documents as the library's provider (sorted keys, compact separators, a
trailing newline, the library's ``convert_to_json`` for sets, models,
datetimes and durations), several times faster. Whatever orjson would write
differently goes through the library's provider unchanged: non-ASCII text
(the stdlib escapes it), integers beyond 64 bits, keys that are not strings,
and any type it cannot serialise. One difference remains: a float may be
spelt differently (1e16 vs 1e+16, the same number), and a non-finite float,
which the stdlib writes as invalid JSON (NaN), becomes null; status documents
hold no floats. Request bodies are not parsed here (app.validation.parse_json).
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response
from globus_action_provider_tools.flask.helpers import JsonProvider

# Datetimes, dataclasses and subclasses of builtins go to ``default`` (the
# library's convert_to_json), exactly as with the stdlib encoder.
_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


class FastJSONProvider(JsonProvider):  # type: ignore[misc, valid-type]
    def response(self, *args: Any, **kwargs: Any) -> Response:
        if (self.compact is None and self._app.debug) or self.compact is False:
            return super().response(*args, **kwargs)  # indented: not the hot path
        obj = self._prepare_response_obj(args, kwargs)
        try:
            body = orjson.dumps(obj, default=self.default, option=_OPTIONS)
        except (orjson.JSONEncodeError, TypeError):
            body = b""
        if not body or not body.isascii():
            return super().response(*args, **kwargs)
        # content_type, not mimetype: no charset to add to application/json, nothing to work out
        return self._app.response_class(body + b"\n", content_type=self.mimetype)
