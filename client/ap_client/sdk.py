"""What differs between globus-sdk 3.x and 4.x, in one place.

globus-sdk 4 replaced ``transport_params`` by a ``transport`` object and a
``retry_config``, and moved token storage from ``globus_sdk.tokenstorage`` to
``globus_sdk.token_storage``. Everything else ap-client uses is the same in both.
"""

from __future__ import annotations

from typing import Any

import globus_sdk

MAJOR = int(globus_sdk.__version__.split(".")[0])

if MAJOR >= 4:
    from globus_sdk.token_storage import JSONTokenStorage, TokenStorageData
else:
    from globus_sdk.tokenstorage import JSONTokenStorage, TokenStorageData

__all__ = ["MAJOR", "JSONTokenStorage", "TokenStorageData", "no_retries"]


def no_retries(http_timeout: float) -> dict[str, Any]:
    """BaseClient keyword arguments: answer at once (never retry), this timeout per request."""
    if MAJOR >= 4:
        from globus_sdk.transport import RequestsTransport, RetryConfig

        return {
            "transport": RequestsTransport(http_timeout=http_timeout),
            "retry_config": RetryConfig(max_retries=0),
        }
    return {"transport_params": {"max_retries": 0, "http_timeout": http_timeout}}
