"""A commit of the service served as a user serves it, for benchmarks that
compare commits (bench/ab.py) or load one (bench/flood.py).

Each side is one commit: a git worktree of it (bench/build/<sha>/src), a venv
built from that commit's requirements.txt (bench/build/venv-<digest>, shared
by commits whose file is the same), the project installed from the worktree,
not editable (``pip install --no-deps --target bench/build/<sha>/site``, on
PYTHONPATH), and started from an empty folder (bench/build/<sha>/run), so the
installed copy is the only one it can import. How it starts is read from
the commit: app/gunicorn_conf.py present, the README's gunicorn command;
else the launcher, ``python -m app``. bench/build/ is ignored by git
(.gitignore: build/).

``serve`` starts one in its own process group and always stops the group;
``Server`` reads the CPU time and memory of its whole process tree.
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import requests

from tests.server import free_port

ROOT = Path(__file__).resolve().parent.parent
# Everything it makes; build/ is in .gitignore, and ruff and copies of the checkout
# (tests/test_scripts.py) leave build folders out.
AB_DIR = ROOT / "bench" / "build"
RESULTS = ROOT / "bench" / "results"
START_KINDS = ("gunicorn", "launcher")
# The only variables a server inherits from the caller's environment: as a
# service manager starts it, nothing of the caller's shell (PYTHONUNBUFFERED,
# settings, a venv) changes what is measured, and a server that copies the
# environment into every request (granian's WSGI environ) copies the same.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME")


class SideError(RuntimeError):
    """A side could not be prepared or did not start; the message has its output."""


def git(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SideError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """One preparation at a time (two runs would build the same venv)."""
    AB_DIR.mkdir(parents=True, exist_ok=True)
    with open(AB_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(command: Sequence[str], what: str, cwd: Path | None = None,
         timeout: float = 1800) -> None:
    done = subprocess.run(list(command), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
        raise SideError(f"{what} failed ({done.returncode}): {' '.join(command)}\n{tail}")


def build_venv(requirements: Sequence[Path], extra: Sequence[str] = (),
               name: str = "venv") -> Path:
    """A venv with ``requirements`` (files) and ``extra`` (pins) installed,
    kept under bench/build/ by the digest of their contents and the Python
    version; built once. Call with the lock held."""
    digest = hashlib.sha256(sys.version.encode())
    for path in requirements:
        digest.update(path.read_bytes())
    for pin in extra:
        digest.update(pin.encode())
    venv = AB_DIR / f"{name}-{digest.hexdigest()[:16]}"
    if (venv / ".complete").exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    print(f"building {venv.relative_to(ROOT)} from "
          f"{', '.join(p.name for p in requirements)} {' '.join(extra)}".rstrip(), flush=True)
    _run([sys.executable, "-m", "venv", str(venv)], "python -m venv")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
           "--disable-pip-version-check"]
    files = [arg for path in requirements for arg in ("-r", str(path))]
    _run([*pip, *files, *extra], f"pip install into {venv.name}")
    (venv / ".complete").write_text("")
    return venv


@dataclass(frozen=True)
class Side:
    """One commit, ready to start."""

    label: str
    ref: str
    sha: str
    src: Path  # its git worktree
    venv: Path  # its dependencies
    site: Path  # the project, installed (not editable)
    start: str  # "gunicorn" or "launcher"

    @property
    def run_dir(self) -> Path:
        return self.src.parent / "run"

    def command(self, port: int | str, extra: Sequence[str] = ()) -> list[str]:
        """How a user starts it: the README's production command of the commit."""
        if self.start == "gunicorn":
            return [str(self.venv / "bin" / "gunicorn"), "-c", "python:app.gunicorn_conf",
                    "--bind", f"127.0.0.1:{port}", *extra, "app:create_app()"]
        return [str(self.venv / "bin" / "python"), "-m", "app", "--host", "127.0.0.1",
                "--port", str(port), *extra]

    def env(self) -> dict[str, str]:
        """Its environment (clean_env), the installed project on PYTHONPATH."""
        return clean_env(self.venv, [self.site])

    def setting(self, name: str) -> object:
        """The default of setting ``name`` in the commit's config.py (a Python
        literal there: 10_000, "600/minute"), or None if the commit has no such
        setting: a side is only given settings it knows (newer commits refuse
        unknown FLASK_* variables)."""
        config = self.src / "config.py"
        text = config.read_text() if config.exists() else ""
        found = re.search(rf"^{re.escape(name)}\s*(?::[^=]*)?=\s*(.+?)\s*(#.*)?$", text, re.M)
        if found is None:
            return None
        try:
            return ast.literal_eval(found.group(1))
        except (ValueError, SyntaxError):
            return found.group(1)

    def describe(self) -> dict[str, str]:
        return {"ref": self.ref, "sha": self.sha, "start": self.start,
                "command": " ".join(self.command("PORT")),
                "venv": str(self.venv.relative_to(ROOT))}


def clean_env(venv: Path, python_path: Sequence[Path]) -> dict[str, str]:
    """A server's environment: INHERITED from the caller's, ``venv``'s bin
    first on PATH, ``python_path`` on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k in INHERITED}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONPATH"] = os.pathsep.join(map(str, python_path))
    return env


def detect_start(sha: str) -> str:
    """gunicorn if the commit has app/gunicorn_conf.py, else the launcher."""
    found = subprocess.run(["git", "cat-file", "-e", f"{sha}:app/gunicorn_conf.py"], cwd=ROOT,
                           capture_output=True, check=False)
    return "gunicorn" if found.returncode == 0 else "launcher"


def prepare(label: str, ref: str, start: str = "auto") -> Side:
    """Worktree, venv and install of commit ``ref`` (each reused if already there)."""
    sha = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    home = AB_DIR / sha[:12]
    src, site = home / "src", home / "site"
    with locked():
        if not (src / ".git").exists():
            shutil.rmtree(src, ignore_errors=True)
            git("worktree", "add", "--detach", "--force", str(src), sha)
        elif git("rev-parse", "HEAD", cwd=src) != sha:
            git("checkout", "--detach", "--force", sha, cwd=src)
        requirements = src / "requirements.txt"
        if not requirements.exists():
            raise SideError(f"{ref} ({sha[:12]}) has no requirements.txt")
        venv = build_venv([requirements])
        if not (site / ".complete").exists():
            shutil.rmtree(site, ignore_errors=True)
            print(f"installing {ref} ({sha[:12]}) into {site.relative_to(ROOT)}", flush=True)
            _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                  "--disable-pip-version-check", "--no-deps", "--target", str(site), str(src)],
                 f"installing {ref}")
            (site / ".complete").write_text(sha)
        (home / "run").mkdir(exist_ok=True)
    kind = detect_start(sha) if start == "auto" else start
    return Side(label, ref, sha, src, venv, site, kind)


def remove_all() -> None:
    """Every worktree, venv and install under bench/build/ (--clean)."""
    with locked():
        for home in AB_DIR.iterdir():
            if (home / "src" / ".git").exists():
                git("worktree", "remove", "--force", str(home / "src"))
        for path in AB_DIR.iterdir():
            if path.is_dir():
                shutil.rmtree(path)


# --- running servers -------------------------------------------------------------------
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def process_tree(root: int) -> list[int]:
    """``root`` and every descendant still running."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


@dataclass
class Server:
    """A started server: its URL, process, and output so far."""

    url: str
    process: subprocess.Popen  # type: ignore[type-arg]
    command: list[str]
    output: IO[bytes]
    started_seconds: float = 0.0
    notes: dict[str, object] = field(default_factory=dict)

    def cpu_seconds(self) -> float:
        """User + system CPU of the whole tree so far, exited children included
        (reaped ones are in their parent's cutime/cstime)."""
        total = 0
        for pid in process_tree(self.process.pid):
            with contextlib.suppress(OSError, IndexError):
                total += sum(int(x) for x in _stat(pid)[11:15])
        return total / TICK

    def rss_bytes(self) -> int:
        """Resident memory of the whole tree (shared pages counted per process)."""
        total = 0
        for pid in process_tree(self.process.pid):
            with contextlib.suppress(OSError, IndexError):
                total += int(_stat(pid)[21]) * PAGE
        return total

    def processes(self) -> int:
        return len(process_tree(self.process.pid))

    def output_text(self, last_lines: int = 30) -> str:
        self.output.flush()
        self.output.seek(0)
        lines = self.output.read().decode(errors="replace").splitlines()
        return "\n".join(lines[-last_lines:])


@contextlib.contextmanager
def serve(command: Sequence[str], env: dict[str, str], cwd: Path,
          port: int, startup_timeout: float = 120) -> Iterator[Server]:
    """Start ``command`` (listening on ``port``) in its own process group,
    wait until it answers HTTP and its process tree has settled, yield it;
    stop the group at the end, whatever happened."""
    output = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    started = time.monotonic()
    process = subprocess.Popen(list(command), cwd=cwd, env=env, stdout=output,
                               stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", process, list(command), output)
    try:
        _wait_until_up(server, startup_timeout)
        server.started_seconds = round(time.monotonic() - started, 2)
        yield server
    finally:
        stop_group(process, timeout=20)
        output.close()


def group_members(pgid: int) -> list[int]:
    """Every process still running in process group ``pgid`` (not zombies)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = _stat(int(entry.name))
                if int(fields[2]) == pgid and fields[0] != "Z":
                    members.append(int(entry.name))
    return members


def stop_group(process: subprocess.Popen, timeout: float) -> None:  # type: ignore[type-arg]
    """SIGTERM to the whole process group of ``process`` (started with
    start_new_session), SIGKILL to what is left after ``timeout`` seconds.
    Unlike tests/server.py's stop_process_group, it also stops a group whose
    leader is already gone (its workers orphaned, still serving)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)
    while group_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _wait_until_up(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise SideError(f"exited with {server.process.returncode} at start: "
                            f"{' '.join(server.command)}\n{server.output_text()}")
        try:
            requests.get(server.url + "/", timeout=2)
            break
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise SideError(f"not answering after {timeout:g} s: "
                                f"{' '.join(server.command)}\n{server.output_text()}") from None
            time.sleep(0.1)
    # Workers may still be forking: wait for the tree to stay the same for 1 s.
    seen, since = process_tree(server.process.pid), time.monotonic()
    while time.monotonic() - since < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
        now = process_tree(server.process.pid)
        if sorted(now) != sorted(seen):
            seen, since = now, time.monotonic()


@contextlib.contextmanager
def serve_side(side: Side, env: dict[str, str], extra: Sequence[str] = (),
               python_path: Sequence[Path] = ()) -> Iterator[Server]:
    """``side`` started as a user starts it with ``env`` on top of its own;
    ``python_path``: folders put after the installed project on PYTHONPATH."""
    port = free_port()
    full = {**side.env(), **env}
    if python_path:
        full["PYTHONPATH"] = os.pathsep.join([full["PYTHONPATH"], *map(str, python_path)])
    with serve(side.command(port, extra), full, side.run_dir, port) as server:
        yield server
