"""whattimeisitrightnow: a Globus Action Provider that tells the time at a UTC offset.

``create_app`` (in app.factory) is loaded on first use, so that importing a
light module of this package, such as the ``ap-client`` command in app.client,
does not import Flask and the Action Provider library.
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
