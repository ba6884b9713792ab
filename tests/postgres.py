"""PostgreSQL for tests and benchmarks: a fresh schema per run, or a private
cluster (initdb) that a test may stop and start, with PgBouncer in front.

The one schema-per-run helper: tests/store_fixtures.py and bench/ use
``temporary_schema``. The store finds its schema through the connection's
search_path (libpq ``options=-csearch_path=...``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import psycopg

from app.store.sql import libpq_conninfo
from tests.server import stop_process_group


def server_binaries() -> Path:
    """The folder of PostgreSQL's initdb and pg_ctl: ``pg_config --bindir``, else
    initdb's on PATH, else the newest /usr/lib/postgresql/*/bin (Debian's packages).
    scripts/_prerequisites.sh looks in the same order."""
    found: list[Path] = []
    try:
        bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        found.append(Path(bindir))
    except (OSError, subprocess.SubprocessError):
        pass
    initdb = shutil.which("initdb")
    if initdb:
        found.append(Path(initdb).resolve().parent)
    packaged = Path("/usr/lib/postgresql").glob("[0-9]*/bin")
    found += sorted(packaged, key=lambda d: float(d.parent.name), reverse=True)
    usable = [d for d in found if (d / "initdb").exists() and (d / "pg_ctl").exists()]
    return usable[0] if usable else Path("/usr/lib/postgresql/NOT-FOUND/bin")


PG_BIN = server_binaries()


def conninfo(url: str) -> str:
    """A libpq URI for a STORE_URL (the store's own key prepared_statements removed)."""
    return libpq_conninfo(url)[0]


def with_schema(url: str, schema: str) -> str:
    """``url`` whose connections use ``schema`` (libpq options=-csearch_path)."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-csearch_path={schema}')}"


def new_schema_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def create_schema(url: str, schema: str) -> str:
    """Create ``schema`` on the server at ``url``; return the STORE_URL using it."""
    with psycopg.connect(conninfo(url), autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return with_schema(url, schema)


def drop_schemas(url: str, pattern: str) -> None:
    """Drop every schema whose name is LIKE ``pattern``."""
    with psycopg.connect(conninfo(url), autocommit=True, connect_timeout=3) as conn:
        names = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (pattern,)
        ).fetchall()
        for (name,) in names:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@contextmanager
def temporary_schema(url: str, prefix: str = "wt_tmp") -> Iterator[str]:
    """A STORE_URL on a new, empty schema, dropped afterwards."""
    schema = new_schema_name(prefix)
    store_url = create_schema(url, schema)
    try:
        yield store_url
    finally:
        drop_schemas(url, schema)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as ``postgres``."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def _wait_for_port(port: int, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} in {seconds} s")


class Cluster:
    """A private PostgreSQL cluster on a free loopback port (trust auth)."""

    def __init__(self, folder: Path, settings: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.settings = settings or {}
        self.data = folder / "data"
        self.port = free_port()
        self.log = folder / "postgres.log"
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
        subprocess.run(
            _as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                          "--auth=trust", "--no-sync", "-E", "UTF8"]),
            check=True, capture_output=True, timeout=120,
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        extra = "".join(f" -c {name}={value}" for name, value in self.settings.items())
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                          "-w", "-t", "60", "-o",
                          f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1{extra}",
                          "start"]),
            check=True, capture_output=True, timeout=90,
        )

    def stop(self) -> None:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                          "stop"]),
            check=False, capture_output=True, timeout=90,
        )


@contextmanager
def private_cluster(settings: dict[str, str] | None = None) -> Iterator[Cluster]:
    """A started private cluster (server ``settings`` on its command line),
    stopped and deleted afterwards."""
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError("PostgreSQL server binaries (initdb) not found: scripts/test "
                           "names the package to install")
    folder = Path(tempfile.mkdtemp(prefix="wt-pg-"))
    try:
        cluster = Cluster(folder, settings)
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def pgbouncer(cluster: Cluster) -> Iterator[str]:
    """Debian's pgbouncer in transaction pooling mode in front of ``cluster``
    (its files in the cluster's folder); yields the URL of its database
    ``postgres``. A client waits at most 3 s for a server connection, then
    gets an error; a failed server login is retried after 1 s."""
    folder = cluster.folder
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        raise RuntimeError("pgbouncer is not installed (scripts/test installs it or says how)")
    port = free_port()
    ini = folder / "pgbouncer.ini"
    users = folder / "users.txt"
    users.write_text('"postgres" ""\n')
    ini.write_text(
        "[databases]\n"
        f"postgres = host=127.0.0.1 port={cluster.port} dbname=postgres\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {users}\n"
        "pool_mode = transaction\n"
        "default_pool_size = 4\nmax_client_conn = 200\n"
        # libpq's options= (search_path) is a session setting: not through a
        # transaction pooler. The private cluster needs no schema.
        "ignore_startup_parameters = extra_float_digits\n"
        "query_wait_timeout = 3\nserver_login_retry = 1\nserver_connect_timeout = 2\n"
        f"logfile = {folder / 'pgbouncer.log'}\n"
    )
    if os.geteuid() == 0:
        for path in (ini, users):
            shutil.chown(path, "postgres", "postgres")
    process = subprocess.Popen(
        _as_postgres([binary, str(ini)]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for_port(port, 30, "pgbouncer")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        stop_process_group(process)
