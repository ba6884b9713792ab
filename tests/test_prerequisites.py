"""scripts/test's checks before the run: what the machine lacks is named at once,
in one line with the command that installs it (scripts/_prerequisites.sh), or
installed when the user may; and the tests' PostgreSQL is a private server
when the configured one does not answer (scripts/_test_postgres.sh).

Nothing is installed here: a program is hidden by a PATH whose folders holding
it are replaced by copies (symlinks) without it, and the one install test uses
a stand-in apt-get (and sudo) on PATH that records its arguments."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.server import ROOT, closed_port

CHECK = ROOT / "scripts" / "_prerequisites.sh"
SBIN = "/usr/local/sbin:/usr/sbin"  # what scripts/test adds to PATH
INSTALL = "apt-get install -y" if os.geteuid() == 0 else "sudo apt-get install -y"


def path_without(programs: set[str], into: Path) -> str:
    """This PATH (with scripts/test's additions), each folder holding one of
    ``programs`` replaced by a folder of symlinks to everything else in it."""
    folders = []
    for number, folder in enumerate(f"{os.environ['PATH']}:{SBIN}".split(":")):
        entries = set(os.listdir(folder)) if os.path.isdir(folder) else set()
        if not entries & programs:
            folders.append(folder)
            continue
        shadow = into / f"shadow{number}"
        shadow.mkdir()
        for name in entries - programs:
            (shadow / name).symlink_to(Path(folder) / name)
        folders.append(str(shadow))
    return ":".join(folders)


def check(path: str, *names: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK), *names], env={**os.environ, "PATH": path, **env},
        capture_output=True, text=True, timeout=60,
    )


def test_nothing_missing_is_silent(tmp_path: Path):
    result = check(f"{os.environ['PATH']}:{SBIN}", INSTALL_PREREQUISITES="no")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_missing_nginx_stops_at_once_with_one_line_naming_the_command(tmp_path: Path):
    result = check(path_without({"nginx"}, tmp_path), INSTALL_PREREQUISITES="no")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"Missing: nginx. Install with: {INSTALL} nginx\n"


def test_everything_missing_is_named_in_one_line(tmp_path: Path):
    hidden = {"nginx", "pgbouncer", "redis-server"}
    result = check(path_without(hidden, tmp_path), INSTALL_PREREQUISITES="no",
                   PYTHON=str(tmp_path / "no-python3"))
    assert result.returncode == 1
    assert result.stderr == (
        f"Missing: Python 3.11+ ({tmp_path / 'no-python3'}), nginx, PgBouncer, "
        f"Redis (redis-server). Install with: {INSTALL} python3 nginx pgbouncer redis-server\n"
    )


def test_only_what_is_asked_for_is_checked(tmp_path: Path):
    path = path_without({"nginx"}, tmp_path)
    assert check(path, "python", "pgbouncer", INSTALL_PREREQUISITES="no").returncode == 0
    unknown = check(path, "nginks")
    assert unknown.returncode == 2
    assert unknown.stderr == "scripts/_prerequisites.sh: unknown prerequisite 'nginks'\n"


def test_a_user_who_may_install_gets_the_debian_package_and_goes_on(tmp_path: Path):
    real_nginx = shutil.which("nginx", path=f"{os.environ['PATH']}:{SBIN}")
    assert real_nginx is not None
    tools = tmp_path / "tools"
    tools.mkdir()
    calls = tmp_path / "calls"
    (tools / "apt-get").write_text(
        "#!/bin/sh\n"
        f'echo "apt-get $*" >> {calls}\n'
        f'[ "$1" = install ] && ln -s {real_nginx} {tools}/nginx\n'
        "exit 0\n"
    )
    (tools / "sudo").write_text('#!/bin/sh\n[ "$1" = -n ] && shift\nexec "$@"\n')
    for tool in ("apt-get", "sudo"):
        (tools / tool).chmod(0o755)
    result = check(f"{tools}:{path_without({'nginx', 'apt-get', 'sudo'}, tmp_path)}", "nginx")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "Installing what the tests need: nginx (Debian packages, apt-get)\n"
    assert calls.read_text() == "apt-get update -qq\napt-get install -y -qq nginx\n"


def test_scripts_test_checks_before_building_or_running_anything(tmp_path: Path):
    missing = tmp_path / "no-python3"
    result = subprocess.run(
        [str(ROOT / "scripts" / "test"), "-k", "nothing"],
        env={**os.environ, "PYTHON": str(missing), "INSTALL_PREREQUISITES": "no"},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout == ""  # neither ruff nor pytest ran
    assert result.stderr == f"Missing: Python 3.11+ ({missing}). Install with: {INSTALL} python3\n"


def test_a_private_postgresql_when_the_configured_one_does_not_answer():
    with closed_port() as port:
        refused = f"postgresql://postgres@127.0.0.1:{port}/test"
        script = (
            "set -euo pipefail; source scripts/_test_postgres.sh; "
            'echo "$TEST_POSTGRES_URL"; echo "$_pg_dir"; .venv/bin/python -c "'
            "import os, psycopg; "
            "print(psycopg.connect(os.environ['TEST_POSTGRES_URL']).execute('SELECT 41 + 1')"
            '.fetchone()[0])"'
        )
        result = subprocess.run(
            ["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=180,
            env={**os.environ, "TEST_POSTGRES_URL": refused},
        )
    assert result.returncode == 0, result.stderr
    url, folder, answer = result.stdout.split()
    assert answer == "42"  # it answered while the script ran
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"PostgreSQL at 127.0.0.1:{port}/test: ")
    assert first.endswith("; the tests use a private server on "
                          f"{url.split('@')[1].split('/')[0]} instead (stopped at exit)")
    assert not Path(folder).exists()  # stopped and deleted when the shell exited
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=3)


def test_the_configured_postgresql_is_used_when_it_answers(postgres_server: str):
    result = subprocess.run(
        ["bash", "-c", 'set -euo pipefail; source scripts/_test_postgres.sh; '
         'echo "$TEST_POSTGRES_URL"'],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "TEST_POSTGRES_URL": postgres_server},
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, postgres_server + "\n", "")
