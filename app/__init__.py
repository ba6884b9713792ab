"""whattimeisitrightnow: a Globus Action Provider that tells the time at a UTC offset.

``create_app`` (in app.factory) is loaded on first use, so that importing a
light module of this package (``python -m app``'s) does not import the whole
app: each worker builds it itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.factory import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from app.factory import create_app

        return create_app
    raise AttributeError(f"module 'app' has no attribute {name!r}")
