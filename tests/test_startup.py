"""Start-up refuses a bad configuration or an unsafe setup with one line and
exit status 2, before any worker starts: ``python -m app`` (the one command,
dev and production), as real processes; and stock gunicorn's workers refuse
the memory store on several processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import requests

from tests.postgres import PG_BIN, conninfo, with_schema
from tests.server import ROOT, free_port, serve

pytestmark = pytest.mark.e2e
PYTHON_M_APP = (sys.executable, "-m", "app", "--port", "0")
SERVER_VARIABLES = ("WEB_CONCURRENCY", "THREADS", "BIND", "DRAIN_SECONDS")


def start(command: tuple[str, ...], env: dict[str, str], *args: str) -> tuple[int, str]:
    """Exit status and stderr of a start that must fail (bounded: it must not serve)."""
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith("FLASK_") and k not in SERVER_VARIABLES}
    environment.update({"FLASK_AUTH_MODE": "dev", **env})
    done = subprocess.run([*command, *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=60)
    return done.returncode, done.stderr + done.stdout


def refused(command: tuple[str, ...], env: dict[str, str], *args: str) -> str:
    """The one line saying why (asserting there is exactly one, and no traceback)."""
    status, output = start(command, env, *args)
    assert status == 2, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("whattimeisitrightnow: ")]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"FLASK_FAILURE_RATE": "abc"},
         "bad setting FLASK_FAILURE_RATE='abc': value is not a valid float; "
         "expected a number from 0 to 1"),
        ({"FLASK_RELEASE_AFTER": "30d"}, "bad setting FLASK_RELEASE_AFTER='30d'"),
        ({"FLASK_METRICS_ENABLED": "nope"}, "bad setting FLASK_METRICS_ENABLED='nope'"),
        ({"FLASK_STORE_URL": "sqlite:///no/such/folder/a.db"}, "no such directory"),
        ({"FLASK_RUNNABLE_BY": "public"},
         "bad setting FLASK_RUNNABLE_BY='public': 'public' is for VISIBLE_TO only"),
        ({"FLASK_MAX_PRINCIPALS": "none"}, "bad setting FLASK_MAX_PRINCIPALS='none'"),
        ({"WEB_CONCURRENCY": "many"},
         "bad setting WEB_CONCURRENCY='many': expected a whole number"),
        ({"THREADS": "0"}, "--threads/THREADS must be at least 1, not 0"),
        ({"BIND": "8000"}, "bad setting BIND='8000': expected host:port"),
        ({"DRAIN_SECONDS": "soon"}, "bad setting DRAIN_SECONDS='soon'"),
    ],
)
def test_bad_configuration_is_one_line(env, expected):
    assert expected in refused(PYTHON_M_APP, env)


def test_missing_credentials_name_them_and_the_dev_mode():
    line = refused(PYTHON_M_APP, {"FLASK_AUTH_MODE": "globus"})
    assert "Globus credentials missing: set FLASK_CLIENT_ID, FLASK_CLIENT_SECRET, FLASK_SCOPE" in (
        line)
    assert line.endswith("(or run `python -m app --dev` to try the service locally)")


@pytest.mark.parametrize(
    ("env", "args", "named"),
    [({"WEB_CONCURRENCY": "3"}, (), "WEB_CONCURRENCY=3"),
     ({}, ("--workers", "2"), "--workers 2"),
     ({"WEB_CONCURRENCY": "1"}, ("--workers", "2"), "--workers 2")],
    ids=["WEB_CONCURRENCY", "--workers", "--workers-over-WEB_CONCURRENCY"],
)
def test_memory_store_refuses_several_workers(env, args, named):
    line = refused(PYTHON_M_APP, env, *args)
    assert line.startswith(f"whattimeisitrightnow: {named}: ")
    assert "worker processes with the memory store" in line
    assert "--workers 1" in line and "postgresql://" in line


@pytest.mark.parametrize("args", [("-w", "2"), ("--workers=3",)], ids=["-w", "--workers="])
def test_stock_gunicorn_refuses_several_workers_on_the_memory_store(tmp_path, args):
    """``gunicorn -k gthread --threads 4 -w 2 'app:create_app()'``: each worker
    refuses in create_app with one line, and gunicorn stops on its
    worker-boot-error status instead of serving split stores. (When several
    workers fail to boot at once, gunicorn 27's own halt path raises again and
    exits 1 with its traceback: its behaviour for any app that fails to load.)"""
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith("FLASK_") and k not in SERVER_VARIABLES}
    environment.update({"FLASK_AUTH_MODE": "dev", "PYTHONPATH": str(ROOT)})
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", "4",
         "--bind", "127.0.0.1:0", *args, "app:create_app()"],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60,
    )
    output = done.stderr + done.stdout
    assert done.returncode in (1, 3), output
    lines = [x for x in output.splitlines() if x.startswith("whattimeisitrightnow: ")]
    assert lines and all("worker processes with the memory store" in x for x in lines), output
    assert "gunicorn --workers" in lines[0] and "--dev" not in output
    assert "Worker failed to boot." in output


def test_default_workers_on_a_sql_store_refuse_per_process_rate_counts(sqlite_url):
    """One worker per core by default on SQL stores: with more than one, rates
    counted per process would be refused (said in one line), also when the
    number of workers was not asked for."""
    from app.startup import SQL_WORKERS

    if SQL_WORKERS < 2:
        pytest.fail("this machine has one core: the default is one worker")
    line = refused(PYTHON_M_APP, {"FLASK_STORE_URL": sqlite_url})
    assert f"{SQL_WORKERS} worker processes with RATE_LIMIT_STORAGE_URL='memory://'" in line


def test_shared_store_serves_several_workers(sqlite_url, shared_rates):
    """The refusal is about the memory store only."""
    with serve({"FLASK_STORE_URL": sqlite_url, **shared_rates}, workers=2) as url:
        assert requests.get(url + "/healthz", timeout=10).json() == {"status": "ok"}


@contextmanager
def postgres_role(server: str, schema: str | None, grant: str | None) -> Iterator[str]:
    """A login role (trust auth) and, optionally, a schema it may only ``grant``."""
    role = f"wt_role_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(conninfo(server), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        if schema:
            conn.execute(f'CREATE SCHEMA "{schema}"')
            if grant:
                conn.execute(f'GRANT {grant} ON SCHEMA "{schema}" TO "{role}"')
    try:
        yield role
    finally:
        with psycopg.connect(conninfo(server), autocommit=True) as conn:
            if schema:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def as_role(server: str, role: str) -> str:
    return server.replace("postgres@", f"{role}@", 1)


def test_postgres_schema_missing(postgres_server):
    url = with_schema(postgres_server, "wt_no_such_schema")
    line = refused(PYTHON_M_APP, {"FLASK_STORE_URL": url})
    assert "PostgreSQL schema 'wt_no_such_schema' does not exist" in line
    assert "CREATE SCHEMA wt_no_such_schema" in line


def test_postgres_schema_without_create_right(postgres_server):
    schema = f"wt_readonly_{uuid.uuid4().hex[:8]}"
    with postgres_role(postgres_server, schema, grant="USAGE") as role:
        url = with_schema(as_role(postgres_server, role), schema)
        line = refused(PYTHON_M_APP, {}, "--store", url)
    assert f"user '{role}' may not create tables in schema '{schema}'" in line
    assert f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}" in line


def test_postgres_database_missing(postgres_server):
    url = postgres_server.rsplit("/", 1)[0] + "/wt_no_such_database"
    line = refused(PYTHON_M_APP, {"FLASK_STORE_URL": url})
    assert "database 'wt_no_such_database' does not exist" in line and "createdb" in line


def test_postgres_unknown_user(postgres_server):
    line = refused(PYTHON_M_APP, {"FLASK_STORE_URL": as_role(postgres_server, "wt_nobody:pw")})
    assert "has no user 'wt_nobody'" in line and ":pw" not in line


@contextmanager
def read_only_folder(folder: Path) -> Iterator[None]:
    """A folder nobody may write in, root included (chattr +i), or for others chmod."""
    if os.geteuid() == 0 and shutil.which("chattr"):
        subprocess.run(["chattr", "+i", str(folder)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)


def test_sqlite_folder_read_only(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only_folder(folder):
        try:
            (folder / "probe").touch()
        except OSError:
            pass
        else:
            pytest.skip("cannot make a folder read-only here (no chattr, and root)")
        line = refused(PYTHON_M_APP, {"FLASK_STORE_URL": f"sqlite:///{folder}/actions.db"})
    assert f"SQLite cannot create or write {folder}/actions.db" in line
    assert f"write access to the folder {folder}" in line


@pytest.fixture
def password_postgres() -> Iterator[str]:
    """A private PostgreSQL cluster (installed binaries) that checks passwords,
    which the shared test server (trust auth) does not: its URL, without one."""
    bin_dir = PG_BIN
    assert (bin_dir / "initdb").exists(), "no PostgreSQL server binaries: run scripts/test"
    as_user = {"user": "postgres"} if os.geteuid() == 0 else {}  # initdb refuses root
    folder = Path(tempfile.mkdtemp(prefix="wt-pg-"))
    (folder / "pw").write_text("the-right-password\n")
    if as_user:
        shutil.chown(folder, "postgres")
        shutil.chown(folder / "pw", "postgres")
    port = free_port()

    def run(*command: str) -> None:
        subprocess.run(command, check=True, capture_output=True, timeout=120, **as_user)

    try:
        run(str(bin_dir / "initdb"), "-D", str(folder / "data"), "-U", "postgres",
            "--auth=scram-sha-256", f"--pwfile={folder / 'pw'}")
        run(str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-l", str(folder / "log"), "-w",
            "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate",
                        "stop"], capture_output=True, timeout=60, **as_user)
        shutil.rmtree(folder, ignore_errors=True)


def test_postgres_wrong_password(password_postgres):
    url = password_postgres.replace("postgres@", "postgres:not-the-password@", 1)
    line = refused(PYTHON_M_APP, {"FLASK_STORE_URL": url})
    assert "refused the password of user 'postgres'" in line
    assert "not-the-password" not in line
