#!/usr/bin/env bash
# Set up everything govcloud, its demo and its tests need on a fresh Debian 12 machine (as root):
# the project venv (.venv) with govcloud installed, then devcloud's own prerequisites (MariaDB,
# RabbitMQ, the OpenStack services' separate venv, sshd/rsync/iproute2 for the lab) and Prometheus.
# Idempotent: a second run only checks, and prints one short line per component. Build and install
# output goes to log files (named on failure). Never starts a system-wide service.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PIPLOG=$PWD/.venv/pip-install.log

# pip, with its output in $PIPLOG: the tail is shown only when it fails
pip_logged() {
  if ! .venv/bin/python -m pip "$@" >>"$PIPLOG" 2>&1; then
    echo "pip $* failed; the last lines of $PIPLOG:" >&2
    tail -n 30 "$PIPLOG" >&2
    exit 1
  fi
}

stamp=.venv/.govcloud-installed
if [ ! -x .venv/bin/python ] || [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ]; then
  t0=$SECONDS
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  : >"$PIPLOG"
  pip_logged install -q --upgrade pip
  # --no-compile: byte-compiling every installed module (ansible-core alone has thousands) took more than
  # half of the install; Python compiles what it imports, when it imports it
  pip_logged install -q --no-compile -e '.[test]'
  touch "$stamp"
  echo "govcloud: installed into .venv with its test tools in $((SECONDS - t0)) s (log: $PIPLOG)"
else
  echo "govcloud: .venv up to date"
fi
export PATH="$PWD/.venv/bin:$PATH"

.venv/bin/devcloud install
.venv/bin/devcloud lab install
bash scripts/install-monitoring.sh
