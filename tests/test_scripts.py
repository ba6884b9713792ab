"""The README's two commands on a fresh copy of the repository: `scripts/dev &`
then at once `scripts/test` both succeed (they share .venv, built once under
a lock). Slow (one real venv build, about a minute): one test."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from tests.server import ROOT, free_port, wait_until_up

pytestmark = pytest.mark.e2e
LEFT_OUT = {".venv", ".venv.lock", ".git", "build", "__pycache__", ".pytest_cache",
            ".hypothesis", ".ruff_cache", "results", ".venv-automate"}


def test_dev_in_the_background_and_test_at_once_on_a_fresh_copy(tmp_path: Path):
    copy = tmp_path / "clone"
    shutil.copytree(ROOT, copy, symlinks=True,
                    ignore=lambda _dir, names: [n for n in names if n in LEFT_OUT
                                                or n.endswith((".egg-info", ".db"))])
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "FLASK_", "VIRTUAL_ENV"))}
    port = free_port()
    dev = subprocess.Popen([str(copy / "scripts" / "dev"), "--port", str(port)], cwd=copy,
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           start_new_session=True)
    try:
        tests = subprocess.run(
            [str(copy / "scripts" / "test"), "-q", "-p", "no:cacheprovider",
             "tests/test_settings.py"],
            cwd=copy, env=env, capture_output=True, text=True, timeout=900,
        )
        assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-3000:]
        assert " passed" in tests.stdout
        wait_until_up(f"http://127.0.0.1:{port}", dev, timeout=120)
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    finally:
        if dev.poll() is None:
            os.killpg(dev.pid, signal.SIGTERM)
        dev.wait(timeout=30)
