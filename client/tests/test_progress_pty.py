"""`--wait`'s progress bar on a real pseudo-terminal: it fits the terminal's width."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

import pytest

from tests.provider import Provider

ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]")


def run_in_terminal(args: list[str], columns: int, seconds: float = 30) -> str:
    """Everything ``args`` wrote to a pty of ``columns`` x 24 (stdout and stderr)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    process = subprocess.Popen(args, stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the process closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            elif process.poll() is not None:
                break
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        os.close(leader)
    assert process.returncode == 0, seen.decode(errors="replace")
    return seen.decode(errors="replace")


@pytest.mark.parametrize("columns", [60, 80])
def test_the_progress_bar_fits_the_terminal(columns):
    provider = Provider(duration=2.5)
    with provider.serve() as url:
        text = run_in_terminal(
            [sys.executable, "-m", "ap_client", "--url", url, "--token", "token-alice",
             "--json", "run", "--body", '{"n": 1}', "--wait"],
            columns,
        )
    (action_id,) = provider.actions
    progress = text[: text.index("{")]  # what came before the final document
    frames = [ESCAPE.sub("", part) for part in re.split(r"[\r\n]", progress)]
    bars = [f for f in frames if "left" in f and "ACTIVE" in f]
    assert len(bars) >= 5, text  # redrawn while waiting
    assert all(len(frame.rstrip()) <= columns for frame in frames), [
        (len(f), f) for f in frames if len(f.rstrip()) > columns
    ]
    assert any("━" in bar for bar in bars)  # a drawn bar, not only text
    assert f"Waiting for {action_id}" in frames
    final = json.loads(text[text.index("{"):text.rindex("}") + 1])
    assert final["status"] == "SUCCEEDED"
