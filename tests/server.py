"""Start the real service under gunicorn on a free loopback port, for e2e tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def gunicorn(
    env: dict[str, str] | None = None,
    workers: int = 1,
    app: str = "app:create_app()",
    extra_args: tuple[str, ...] = (),
) -> Iterator[str]:
    """Yield the base URL of a gunicorn serving ``app``; stop it afterwards."""
    with gunicorn_process(env, workers, app, extra_args) as (url, _process):
        yield url


@contextmanager
def gunicorn_process(
    env: dict[str, str] | None = None,
    workers: int = 1,
    app: str = "app:create_app()",
    extra_args: tuple[str, ...] = (),
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Like gunicorn(), also yielding the master process (its own process
    group, so ``os.killpg(process.pid, SIGKILL)`` kills master and workers)."""
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", app,
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers),
        "--graceful-timeout", "2",
        "--no-control-socket",
        *extra_args,
    ]
    environment = {**os.environ, "FLASK_AUTH_MODE": "dev", **(env or {})}
    process = subprocess.Popen(
        command, cwd=ROOT, env=environment,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process)
        yield url, process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise RuntimeError(f"server exited with {process.returncode}:\n{output}")
        try:
            requests.get(url + "/", timeout=1)
            return
        except (requests.ConnectionError, requests.Timeout):
            # Timeout: the socket is bound but the workers are still booting.
            time.sleep(0.1)
    raise RuntimeError(f"server at {url} did not come up in {timeout} s")
