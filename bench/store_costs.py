"""What one request costs on PostgreSQL: the inputs of bench/README.md's
capacity model (issue 15).

    .venv/bin/python -m bench.store_costs              # 2,000 runs, 2,000 status
    .venv/bin/python -m bench.store_costs --requests 5000

On a private cluster (initdb, tests/postgres.py: nothing else writes to it, so
its counters are ours alone) behind the service under python -m app (1 worker,
dev auth), sends --requests ``POST /run`` (fresh request_ids) and then as many
``GET /<id>/status``, one client, and reads for each kind, per request:

- statements PostgreSQL ran, their own execution + planning time and the WAL
  bytes they wrote: pg_stat_statements (every hot statement runs alone in
  autocommit: one statement = one round trip);
- CPU in the service's worker and in PostgreSQL's backends (utime + stime
  from /proc, the backends found by application_name);
- the WAL flushes PostgreSQL did (``pg_stat_wal.wal_sync``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import requests

from bench import run as runner
from tests.postgres import conninfo, private_cluster

TICK = os.sysconf("SC_CLK_TCK")
APP_NAME = "wt_bench_costs"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def listeners(port: int) -> list[int]:
    """PIDs holding the listening socket on ``port`` (the launcher and its workers)."""
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True,
                         text=True, check=True).stdout
    return sorted({int(pid) for pid in re.findall(r"pid=(\d+)", out)})


class Counters:
    """pg_stat_statements (calls, PostgreSQL's own time, WAL bytes, per
    statement), pg_stat_wal's flushes, and CPU of the service and backends."""

    def __init__(self, url: str, port: int) -> None:
        self.conn = psycopg.connect(conninfo(url), autocommit=True)
        self.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        self.port = port

    def reset(self) -> dict[str, float]:
        self.conn.execute("SELECT pg_stat_statements_reset()")
        return self.cpu()

    def cpu(self) -> dict[str, float]:
        backends = self.conn.execute(
            "SELECT array(SELECT pid FROM pg_stat_activity WHERE application_name = %s)",
            (APP_NAME,),
        ).fetchone()[0]
        syncs = self.conn.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()[0]
        self.conn.execute("SELECT pg_stat_clear_snapshot()")
        return {
            "pg_cpu_s": sum(cpu_seconds(pid) for pid in backends),
            "service_cpu_s": sum(cpu_seconds(pid) for pid in listeners(self.port)),
            "wal_syncs": float(syncs),
        }

    def statements(self) -> list[tuple[str, int, float, int]]:
        """(query, calls, PostgreSQL's own ms, WAL bytes) of the service's statements."""
        return self.conn.execute(
            "SELECT s.query, s.calls, s.total_exec_time + s.total_plan_time, s.wal_bytes "
            "FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid "
            "WHERE s.query NOT LIKE '%%pg_stat%%' ORDER BY s.calls DESC"
        ).fetchall()


def measure(url: str, counters: Counters, kind: str, count: int, action_id: str) -> dict:
    session = requests.Session()
    headers = {"Authorization": f"Bearer {runner.TOKEN}"}
    before = counters.reset()
    for n in range(count):
        if kind == "run":
            body = {"request_id": f"costs-{uuid.uuid4()}-{n}", "body": {"utc_offset": 5.5}}
            response = session.post(f"{url}/run", json=body, headers=headers, timeout=10)
            assert response.status_code == 202, response.text
        else:
            response = session.get(f"{url}/{action_id}/status", headers=headers, timeout=10)
            assert response.status_code == 200, response.text
    statements = counters.statements()
    after = counters.cpu()
    return {
        "statements_per_request": round(sum(s[1] for s in statements) / count, 3),
        "postgres_exec_us_per_request": round(sum(s[2] for s in statements) * 1e3 / count, 1),
        "wal_bytes_per_request": round(sum(int(s[3]) for s in statements) / count, 1),
        "wal_flushes_per_request": round((after["wal_syncs"] - before["wal_syncs"]) / count, 3),
        "service_cpu_us_per_request": round(
            (after["service_cpu_s"] - before["service_cpu_s"]) * 1e6 / count, 1),
        "postgres_backend_cpu_us_per_request": round(
            (after["pg_cpu_s"] - before["pg_cpu_s"]) * 1e6 / count, 1),
        "statements": [
            {"query": q[:120], "calls": c, "exec_ms": round(t, 2), "wal_bytes": int(w)}
            for q, c, t, w in statements
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store_costs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2_000)
    args = parser.parse_args(argv)
    results: dict = {}
    with private_cluster({"shared_preload_libraries": "pg_stat_statements",
                          "pg_stat_statements.track_planning": "on"}) as cluster:
        store_url = f"{cluster.url}?application_name={APP_NAME}"
        env = runner.service_env(runner.Store("postgresql", store_url, shared=True))
        with runner.serve("app:create_app()", 1, env) as url:
            port = int(url.rsplit(":", 1)[1])
            counters = Counters(cluster.url, port)
            action_id = runner.start_action(url, runner.PATHS["classic"])
            measure(url, counters, "run", 100, action_id)  # warm-up: connections, caches
            measure(url, counters, "status", 100, action_id)
            for kind in ("run", "status"):
                results[kind] = measure(url, counters, kind, args.requests, action_id)
    print(json.dumps(results, indent=2))
    runner.RESULTS.mkdir(exist_ok=True)
    out = runner.RESULTS / f"costs-{uuid.uuid4().hex[:8]}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"written to {out.relative_to(runner.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
