# Sourced by scripts/test once .venv is built: the PostgreSQL the tests use.
# That is TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test,
# no password) when it answers. When it does not (no server running, a
# password asked, no database `test`), a private throwaway server is started
# instead: initdb in a temporary folder (trust auth, as the user postgres when
# run as root), a free loopback port, database `test`; TEST_POSTGRES_URL points
# at it and it is stopped and deleted when scripts/test exits.
TEST_POSTGRES_URL="${TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}"
export TEST_POSTGRES_URL
if ! _pg_refused=$(.venv/bin/python - "$TEST_POSTGRES_URL" 2>&1 <<'PY'
import sys

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests.postgres import conninfo

try:
    psycopg.connect(conninfo(sys.argv[1]), connect_timeout=3).close()
except psycopg.Error as error:
    reason = str(error).strip().splitlines()[-1]
    where = conninfo_to_dict(conninfo(sys.argv[1]))  # no password in the line
    sys.exit(f"{where.get('host')}:{where.get('port', 5432)}/{where.get('dbname')}: {reason}")
PY
); then
  _pg_bin=$(.venv/bin/python -c 'from tests.postgres import PG_BIN; print(PG_BIN)')
  _pg_dir=$(mktemp -d -t wt-test-postgres-XXXXXX)
  _pg_port=$(.venv/bin/python -c 'from tests.postgres import free_port; print(free_port())')
  _as_pg=()
  if [ "$EUID" -eq 0 ]; then  # initdb and postgres refuse to run as root
    chown postgres: "$_pg_dir"
    _as_pg=(runuser -u postgres --)
  fi
  _stop_test_postgres() {
    "${_as_pg[@]}" "$_pg_bin/pg_ctl" -D "$_pg_dir/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$_pg_dir"
  }
  trap _stop_test_postgres EXIT
  echo "PostgreSQL at $_pg_refused; the tests use a private server on" \
    "127.0.0.1:$_pg_port instead (stopped at exit)" >&2
  "${_as_pg[@]}" "$_pg_bin/initdb" -D "$_pg_dir/data" -U postgres --auth=trust --no-sync \
    -E UTF8 >"$_pg_dir/initdb.log" 2>&1 || { cat "$_pg_dir/initdb.log" >&2; exit 1; }
  "${_as_pg[@]}" "$_pg_bin/pg_ctl" -D "$_pg_dir/data" -l "$_pg_dir/postgres.log" -w \
    -o "-p $_pg_port -k $_pg_dir -c listen_addresses=127.0.0.1" start >/dev/null
  "$_pg_bin/createdb" -h 127.0.0.1 -p "$_pg_port" -U postgres test
  TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$_pg_port/test"
fi
unset _pg_refused
