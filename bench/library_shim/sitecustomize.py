"""The library's provider under another side's own server and settings.

bench/ab.py puts this folder (copied, with tests/library_provider.py) on the
PYTHONPATH of one extra start of a side, where Python imports it at start.
Whatever app that side's start command names, its server (granian or
gunicorn) then serves ``bench_library_app:app`` instead, with every one of its
own settings: only the application differs from the side measured beside it.
The server's settings are written to $BENCH_LIBRARY_RECORD (JSON), so that
the results say what the library was served with.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import sys
from typing import Any

TARGET = "bench_library_app:app"


def _record(data: dict[str, Any]) -> None:
    path = os.environ.get("BENCH_LIBRARY_RECORD")
    if path:
        with open(path, "w") as out:
            json.dump(data, out, default=str)


def _patch_granian(common: Any) -> None:
    original = common.AbstractServer.serve

    def serve(self: Any, spawn_target: Any = None, target_loader: Any = None,
              wrap_loader: bool = True) -> Any:
        settings = {k: v for k, v in vars(self).items()
                    if isinstance(v, int | float | str | bool) or v is None}
        _record({"server": "granian", **settings})
        self.target, self.factory = TARGET, False
        return original(self, spawn_target, None, True)  # granian's own loader

    common.AbstractServer.serve = serve


def _patch_gunicorn(wsgiapp: Any) -> None:
    def load_wsgiapp(self: Any) -> Any:
        cfg = self.cfg
        _record({"server": "gunicorn", "app_uri": self.app_uri, "workers": cfg.workers,
                 "worker_class": cfg.worker_class_str, "threads": cfg.threads})
        from bench_library_app import app

        return app

    wsgiapp.WSGIApplication.load_wsgiapp = load_wsgiapp


PATCHES = {"granian.server.common": _patch_granian, "gunicorn.app.wsgiapp": _patch_gunicorn}


class _Finder(importlib.abc.MetaPathFinder):
    """Patches a module of PATCHES right after it is first imported."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader, patch = spec.loader, PATCHES[name]

        class Loader(importlib.abc.Loader):
            def create_module(self, spec: Any) -> Any:
                return loader.create_module(spec)

            def exec_module(self, module: Any) -> None:
                loader.exec_module(module)
                patch(module)

        spec.loader = Loader()
        return spec


sys.meta_path.insert(0, _Finder())
