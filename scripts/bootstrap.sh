#!/usr/bin/env bash
# Set up everything govcloud, its demo and its tests need on a fresh Debian 12 machine (as root):
# the project venv (.venv) with govcloud installed, then devcloud's own prerequisites (MariaDB,
# RabbitMQ, the OpenStack services' separate venv, sshd/rsync/iproute2 for the lab) and Prometheus.
# Idempotent: a second run only checks. Never starts a system-wide service.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

step() { printf '\n==> %s\n' "$*"; }

if [ ! -x .venv/bin/python ]; then
  step "creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.govcloud-installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ]; then
  step "installing govcloud and its test tools into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"

step "devcloud prerequisites (apt packages, OpenStack venv)"
.venv/bin/devcloud install
.venv/bin/devcloud lab install

step "monitoring tools (Prometheus, promtool, Alertmanager from Debian; no service started)"
bash scripts/install-monitoring.sh
