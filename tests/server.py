"""Start the real service (``python -m app``: granian) on a free loopback port,
for e2e tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import requests

ROOT = Path(__file__).parent.parent


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections for as long as the block runs
    (bound but not listening, so no other process can take it meanwhile)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(
    env: dict[str, str] | None = None,
    workers: int | None = 1,
    app: str = "app:create_app()",
    extra_args: tuple[str, ...] = (),
) -> Iterator[str]:
    """Yield the base URL of ``python -m app`` serving ``app``; stop it afterwards."""
    with serve_process(env, workers, app, extra_args) as (url, _process):
        yield url


@contextmanager
def serve_process(
    env: dict[str, str] | None = None,
    workers: int | None = 1,
    app: str = "app:create_app()",
    extra_args: tuple[str, ...] = (),
    output_path: Path | None = None,
    python: str = sys.executable,
    cwd: Path = ROOT,
    startup_timeout: float = 30,
    port: int | None = None,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Like serve(), also yielding the launcher's process (its own process
    group, so ``os.killpg(process.pid, SIGKILL)`` kills it and its workers).
    ``output_path``: keep the server's stdout and stderr in that file.
    ``python``, ``cwd``: serve with another installation, from another place.
    ``workers=None``: as many as the launcher chooses for the store. No drain
    on SIGTERM unless ``extra_args`` ask for one (``--drain-seconds 2``).
    ``port``: a given one (to start an instance again where it was).
    The one launcher of the tests and the benchmarks."""
    port = port or free_port()
    command = [
        python, "-m", "app", "--host", "127.0.0.1", "--port", str(port),
        *(("--workers", str(workers)) if workers is not None else ()),
        *(("--app", app) if app != "app:create_app()" else ()),
        "--drain-seconds", "0",
        *extra_args,
    ]
    environment = {**os.environ, "FLASK_AUTH_MODE": "dev", **(env or {})}
    with _started(command, environment, port, output_path, cwd, startup_timeout) as started:
        yield started


@contextmanager
def _started(
    command: list[str], environment: dict[str, str], port: int,
    output_path: Path | None, cwd: Path, startup_timeout: float,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``command`` (a server on ``port``) until the block ends."""
    # Output goes to a file, not a pipe: nobody reads a pipe while tests run,
    # and a full pipe would block the server's logging.
    with (
        open(output_path, "w+b") if output_path else tempfile.TemporaryFile()
    ) as output:
        process = subprocess.Popen(
            command, cwd=cwd, env=environment,
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(url, process, output, startup_timeout)
            yield url, process
        finally:
            stop_process_group(process)


@contextmanager
def gunicorn_process(
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = ("-k", "gthread", "--threads", "4"),
    output_path: Path | None = None,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Stock gunicorn serving the app (the documented alternative server):
    ``gunicorn -k gthread --threads 4 ... 'app:create_app()'``."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", *args,
               "app:create_app()"]
    environment = {**os.environ, "FLASK_AUTH_MODE": "dev", **(env or {})}
    with _started(command, environment, port, output_path, ROOT, 30) as started:
        yield started


def wait_until_up(
    url: str, process: subprocess.Popen, output: IO[bytes] | None = None, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = ""
            if output is not None:
                output.seek(0)
                text = output.read().decode(errors="replace")
            raise RuntimeError(f"server exited with {process.returncode}:\n{text}")
        try:
            requests.get(url + "/", timeout=1)
            return
        except (requests.ConnectionError, requests.Timeout):
            # Bound but still loading the app (slow on a cold start): try again.
            time.sleep(0.1)
    raise RuntimeError(f"server at {url} did not come up in {timeout} s")


def stop_process_group(process: subprocess.Popen, timeout: float = 10) -> None:  # type: ignore[type-arg]
    """SIGTERM to a process started with ``start_new_session=True`` and its
    children, SIGKILL if they are not gone within ``timeout`` seconds."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def worker_pids(main_pid: int) -> set[int]:
    children = Path(f"/proc/{main_pid}/task/{main_pid}/children").read_text()
    return {int(pid) for pid in children.split()}


def settled_workers(main_pid: int) -> set[int]:
    """The worker pids, once the launcher has started them all (none new for 1 s)."""
    seen, since = worker_pids(main_pid), time.monotonic()
    deadline = since + 30
    while time.monotonic() - since < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
        now = worker_pids(main_pid)
        if now != seen:
            seen, since = now, time.monotonic()
    assert seen, "the server has no workers"
    return seen
