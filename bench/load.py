"""wrk, one run at a time, with every answer's status counted (bench/lua/ab.lua).

wrk's own error count only sees statuses above 399; the Lua script counts
every status apiece, so "non-2xx" here means every answer that was not a
2xx, and socket errors (connect, read, write, timeouts) apart.

Many callers: given several tokens, the script sends request i with token
i mod N (and, with ``Request.paths``, path i mod N, so each token asks for
its own action). The service limits each identity's request rates, and
production's traffic comes from many users: one token at thousands of
requests a second measures the 429 path. The requests are built once per
token before the run (a run request's body is appended to its prebuilt
head), and wrk's own CPU is measured (``wrk_cpu_pct``) to show it is not
the bottleneck.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

LUA = Path(__file__).resolve().parent / "lua" / "ab.lua"
# For a server loaded by one identity: per-caller limits it never reaches (the
# checks still run), and room for every action its runs create.
ONE_IDENTITY_LIMITS = {
    "FLASK_RUN_RATE_LIMIT": "1000000/minute",
    "FLASK_GET_RATE_LIMIT": "1000000/minute",
    "FLASK_MAX_LIVE_ACTIONS": "10000000",
    "FLASK_MEMORY_STORE_CAPACITY": "10000000",
}


class WrkMissing(SystemExit):
    """wrk is not installed: the one line says how to get it."""


def require_wrk() -> str:
    found = shutil.which("wrk")
    if not found:
        raise WrkMissing("wrk not found on PATH: install it (Debian: apt-get install -y wrk)")
    return found


@dataclass(frozen=True)
class Request:
    """What every request of a run looks like. ``body``: JSON in which ``%s``
    becomes a fresh request_id each time. ``paths``: one path per token
    (request i goes to paths[i mod N] with token i mod N), instead of ``path``."""

    method: str = "GET"
    path: str = "/"
    body: str | None = None
    paths: tuple[str, ...] | None = None


@dataclass
class Measure:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int]  # HTTP status -> answers
    socket_errors: dict[str, int]  # connect, read, write, timeouts
    wrk_cpu_s: float = 0.0  # wrk's own user + system CPU

    @property
    def wrk_cpu_pct(self) -> float:
        """wrk's CPU as a share of one core over the run (100: it was the bottleneck)."""
        return 100 * self.wrk_cpu_s / self.seconds if self.seconds else 0.0

    @property
    def non_2xx(self) -> int:
        return sum(n for k, n in self.statuses.items() if not 200 <= int(k) < 300)

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "non_2xx": self.non_2xx, "errors": self.errors,
                "wrk_cpu_pct": round(self.wrk_cpu_pct, 1)}


def children_cpu() -> float:
    """User + system CPU of this process's children reaped so far. Around one
    wrk run it is wrk's own: the servers a bench starts are reaped only when
    they are stopped, and one wrk runs at a time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(wrk_bin: str, url: str, request: Request, *, token: str | Sequence[str],
            seconds: float, connections: int, close: bool = False, timeout: float = 10,
            ids_prefix: str | None = None) -> Measure:
    """``wrk -t1 -c<connections> -d<seconds>s`` against ``url`` (keep-alive
    unless ``close``). ``token``: one, or several used in turn (with
    ``request.paths``, as many as the paths). ``ids_prefix``: wrk writes the
    action_id of every 2xx answer to ``<ids_prefix>1``."""
    tokens = [token] if isinstance(token, str) else list(token)
    if not tokens or (request.paths is not None and len(request.paths) != len(tokens)):
        raise ValueError("one path per token, and at least one token")
    env = {**os.environ, "BENCH_METHOD": request.method, "BENCH_PATH": request.path,
           "BENCH_NONCE": uuid.uuid4().hex[:12], "BENCH_CLOSE": "1" if close else "0"}
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        files = {"BENCH_TOKENS": tokens, "BENCH_PATHS": request.paths}
        for name, lines in files.items():
            env.pop(name, None)
            if lines is not None:
                env[name] = str(Path(tmp) / name.lower())
                Path(env[name]).write_text("".join(f"{line}\n" for line in lines))
        for name, value in (("BENCH_BODY", request.body), ("BENCH_IDS", ids_prefix)):
            env.pop(name, None)
            if value is not None:
                env[name] = value
        command = [wrk_bin, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
                   "--timeout", f"{timeout:g}s", "-s", str(LUA), url]
        cpu_before = children_cpu()
        done = subprocess.run(command, env=env, capture_output=True, text=True,
                              timeout=seconds + timeout + 30, check=False)
        wrk_cpu = children_cpu() - cpu_before
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {' '.join(command)}\n"
                           f"{done.stdout}{done.stderr}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    duration = data["duration_us"] / 1e6
    return Measure(
        requests=data["requests"], seconds=round(duration, 3),
        rps=data["requests"] / duration if duration else 0.0,
        p50_ms=data["p50_us"] / 1000, p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        statuses=dict(sorted(data["statuses"].items())),
        socket_errors={k: data[k] for k in ("connect_errors", "read_errors", "write_errors",
                                            "timeouts")},
        wrk_cpu_s=round(wrk_cpu, 3),
    )
