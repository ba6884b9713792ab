# Sourced by the other scripts: make .venv, install $REQUIREMENTS into it, the
# project itself and the client in client/ (both editable, so `ap-client` is on
# .venv/bin and the service's tests drive the client), skipping the install
# when those files (and what they include) have not changed.
# One script at a time builds it (`scripts/dev &` then `scripts/test` share
# .venv): the second waits on the lock, then finds it built.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
exec 9>.venv.lock
flock 9
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(basename "$REQUIREMENTS")"
digest=$(cat requirements.txt "$REQUIREMENTS" pyproject.toml client/requirements.txt \
  client/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -r "$REQUIREMENTS" -r client/requirements.txt
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e . -e ./client
  echo "$digest" > "$stamp"
fi
exec 9>&-  # unlocked; the server or the tests do not hold it
