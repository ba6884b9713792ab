"""A real, non-editable install: a wheel built from this working tree,
installed into a fresh venv, served from a directory that is not the checkout,
with the operator's config file named by WHATTIMEISITRIGHTNOW_CONFIG.

The wheel is installed without its dependencies, which the fresh venv borrows
from .venv through a .pth line (offline and quick; pip would fetch the same
pinned set). A .pth line adds a path without running that path's own .pth
files, so .venv's editable install of the checkout stays out of the way.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import requests

from tests.helpers import DEV_ALICE as ALICE
from tests.server import ROOT, serve_process

pytestmark = pytest.mark.e2e
LEFT_OUT = {".venv", ".git", "tests", "bench", "build", "__pycache__", ".pytest_cache",
            ".hypothesis", ".ruff_cache", "results"}


def build_wheel(into: Path) -> Path:
    """``pip wheel`` of a copy of the working tree (pip builds in the source
    tree: the checkout stays clean)."""
    source = into / "source"
    shutil.copytree(ROOT, source, symlinks=True,
                    ignore=lambda _dir, names: [n for n in names if n in LEFT_OUT
                                                or n.endswith((".egg-info", ".db"))])
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--wheel-dir", str(into / "dist"), str(source)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = (into / "dist").glob("whattimeisitrightnow-*.whl")
    return wheel


def fresh_venv(where: Path, wheel: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)],
                   check=True, timeout=120)
    python = where / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--disable-pip-version-check", "--no-deps", str(wheel)],
        check=True, capture_output=True, timeout=300,
    )
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = subprocess.run([str(python), "-c", code],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "borrowed-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


def test_wheel_serves_from_any_directory(tmp_path: Path):
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("app/defaults.py", "app/schema.json", "app/__main__.py",
                    "app/settings.py", "app/spec/actions_spec.openapi.yaml"):
        assert shipped in names
    assert zipfile.ZipFile(wheel).read("app/defaults.py") == (ROOT / "config.py").read_bytes()
    outside = ("tests/", "bench/", "config.py", "deploy/")
    assert not [n for n in names if n.startswith(outside)]

    python = fresh_venv(tmp_path / "venv", wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    site_config = tmp_path / "etc" / "whattimeisitrightnow.py"
    site_config.parent.mkdir()
    site_config.write_text("FAILURE_RATE = 0.0\nMIN_DELAY_SECONDS = 0\nMAX_DELAY_SECONDS = 0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "FLASK_"))}
    env["WHATTIMEISITRIGHTNOW_CONFIG"] = str(site_config)
    env["PYTHONPATH"] = ""  # also in the server, which adds os.environ under env

    code = "import app, app.serving; print(app.__file__)"
    where = subprocess.run([str(python), "-c", code],
                           cwd=elsewhere, env=env, check=True, capture_output=True, text=True)
    assert where.stdout.strip().startswith(str(tmp_path / "venv"))  # the installed code

    # The one command, python -m app, in dev mode (no Globus credentials here).
    with serve_process(env=env, python=str(python), cwd=elsewhere) as (url, _process):
        description = requests.get(url + "/", headers=ALICE, timeout=10).json()
        assert description["input_schema"] == json.loads((ROOT / "schema.json").read_text())
        run = requests.post(url + "/run", headers=ALICE, timeout=10,
                            json={"request_id": "r1", "body": {"utc_offset": 1}})
        assert run.status_code == 202, run.text
        status = requests.get(f"{url}/{run.json()['action_id']}/status", headers=ALICE, timeout=10)
        assert status.json()["status"] == "SUCCEEDED"  # the operator's file was read
        assert requests.get(url + "/healthz", timeout=10).json() == {"status": "ok"}
