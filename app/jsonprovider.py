"""The library's JSON provider, writing with orjson (fast path, see
bench/README.md#json-responses): the same documents, with UTF-8 text rather
than ``\\u`` escapes."""

from __future__ import annotations

from typing import Any

import orjson
from globus_action_provider_tools.flask.helpers import JsonProvider


class OrjsonProvider(JsonProvider):  # type: ignore[misc, valid-type]
    def dumps(self, obj: Any, **kwargs: Any) -> str:
        try:
            return orjson.dumps(obj, default=self.default, option=orjson.OPT_SORT_KEYS).decode()
        except TypeError:  # e.g. an integer past 64 bits (no status has one)
            return str(super().dumps(obj, **kwargs))
