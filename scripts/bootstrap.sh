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
if [ ! -x .venv/bin/python ] || [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ rig/pyproject.toml -nt "$stamp" ]; then
  t0=$SECONDS
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  : >"$PIPLOG"
  # uv (from PyPI) installs the same versions as pip in a few seconds from its cache (~/.cache/uv)
  # instead of about 25; pip is the fallback when uv cannot be had. Neither byte-compiles at install
  # (ansible-core alone has thousands of modules): Python compiles what it imports, when it imports it
  if .venv/bin/python -m pip install -q uv >>"$PIPLOG" 2>&1; then
    uv_logged() {
      if ! .venv/bin/uv pip install --python .venv/bin/python "$@" >>"$PIPLOG" 2>&1; then
        echo "uv pip install $* failed; the last lines of $PIPLOG:" >&2
        tail -n 30 "$PIPLOG" >&2
        exit 1
      fi
    }
    uv_logged -q -e '.[test]' -e ./rig  # the product, and the test rig (devcloud) as its own distribution
  else
    pip_logged install -q --upgrade pip
    pip_logged install -q --no-compile -e '.[test]' -e ./rig
  fi
  touch "$stamp"
  echo "govcloud: installed into .venv with its test tools in $((SECONDS - t0)) s (log: $PIPLOG)"
else
  echo "govcloud: .venv up to date"
fi
export PATH="$PWD/.venv/bin:$PATH"

.venv/bin/devcloud install
.venv/bin/devcloud lab install
bash scripts/install-monitoring.sh
