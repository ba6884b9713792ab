"""The library's JSON provider, writing with orjson (fast path, see
bench/README.md#json-responses): the same JSON documents, UTF-8 rather
than ``\\u`` escapes."""

from __future__ import annotations

from typing import Any

import orjson
from globus_action_provider_tools.flask.helpers import JsonProvider


class OrjsonProvider(JsonProvider):  # type: ignore[misc, valid-type]
    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, default=self.default, option=orjson.OPT_SORT_KEYS).decode()
