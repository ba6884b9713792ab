#!/usr/bin/env bash
# Run by scripts/test and scripts/test-client before anything else: is what the
# tests need beyond Python packages on this machine? Arguments name what to
# check (default: all of them):
#   python      Python 3.11 or newer with venv (Debian: python3, python3-venv)
#   postgresql  PostgreSQL server binaries, initdb and pg_ctl, found through
#               `pg_config --bindir`, initdb on PATH, or /usr/lib/postgresql/*/bin
#               (Debian: postgresql); tests start private servers with them
#   nginx       nginx on PATH (Debian: nginx), for tests/test_proxy_e2e.py
#   pgbouncer   pgbouncer on PATH (Debian: pgbouncer), for tests/test_store_outage.py
#   redis       redis-server on PATH (Debian: redis-server)
# What is missing is installed with apt-get when this runs as root or with
# passwordless sudo, unless INSTALL_PREREQUISITES=no; otherwise it exits 1 at
# once with one line naming what is missing and the command that installs it.
# Silent when everything is there. Programs are looked for on PATH only:
# scripts/test adds /usr/sbin and /usr/local/sbin, where Debian puts nginx and
# pgbouncer.
set -euo pipefail
PYTHON="${PYTHON:-python3}"

# The folder holding initdb and pg_ctl, or nothing (same order as tests/postgres.py).
pg_bindir() {
  local dir
  if dir=$(pg_config --bindir 2>/dev/null) && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
    echo "$dir"; return
  fi
  if dir=$(command -v initdb 2>/dev/null); then
    dir=$(dirname "$(readlink -f "$dir")")
    [ -x "$dir/pg_ctl" ] && { echo "$dir"; return; }
  fi
  for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
    [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && { echo "$dir"; return; }
  done
  return 0
}

# "what|Debian package" for each missing thing among the arguments.
missing() {
  local name
  for name in "$@"; do
    case "$name" in
      python)
        if ! command -v "$PYTHON" >/dev/null; then
          echo "Python 3.11+ ($PYTHON)|python3"
        elif ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
          echo "Python 3.11+ ($PYTHON is $("$PYTHON" -c 'import platform; print(platform.python_version())'))|python3"
        elif ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
          echo "Python's venv module|python3-venv"
        fi ;;
      postgresql) [ -n "$(pg_bindir)" ] || echo "PostgreSQL server (initdb, pg_ctl)|postgresql" ;;
      nginx) command -v nginx >/dev/null || echo "nginx|nginx" ;;
      pgbouncer) command -v pgbouncer >/dev/null || echo "PgBouncer|pgbouncer" ;;
      redis) command -v redis-server >/dev/null || echo "Redis (redis-server)|redis-server" ;;
    esac
  done
}

# How this user may install: "" (as root), "sudo -n" (passwordless sudo), or no way (1).
installer() {
  if [ "$EUID" -eq 0 ]; then
    echo ""
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    echo "sudo -n"
  else
    return 1
  fi
}

[ $# -gt 0 ] || set -- python postgresql nginx pgbouncer redis
for name in "$@"; do
  case "$name" in
    python|postgresql|nginx|pgbouncer|redis) ;;
    *) echo "scripts/_prerequisites.sh: unknown prerequisite '$name'" >&2; exit 2 ;;
  esac
done
mapfile -t found < <(missing "$@")
[ ${#found[@]} -eq 0 ] && exit 0

what=() packages=()
for item in "${found[@]}"; do
  what+=("${item%%|*}")
  packages+=("${item##*|}")
done
list=${what[0]}
for item in "${what[@]:1}"; do list+=", $item"; done

if [ "${INSTALL_PREREQUISITES:-yes}" != no ] && command -v apt-get >/dev/null \
    && sudo=$(installer); then
  echo "Installing what the tests need: ${packages[*]} (Debian packages, apt-get)" >&2
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
  mapfile -t found < <(missing "$@")
  if [ ${#found[@]} -eq 0 ]; then
    exit 0
  fi
  echo "Still missing after apt-get install ${packages[*]}: ${found[*]%%|*}" >&2
  exit 1
fi

if [ "$EUID" -eq 0 ]; then command="apt-get install -y ${packages[*]}"
else command="sudo apt-get install -y ${packages[*]}"; fi
if command -v apt-get >/dev/null; then
  echo "Missing: $list. Install with: $command" >&2
else
  echo "Missing: $list. Install with your package manager (Debian: $command)" >&2
fi
exit 1
