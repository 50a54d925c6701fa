#!/usr/bin/env bash
# Set everything up and run the whole test suite: unit tests, static checks, and the integration
# tests against the real devcloud (OpenStack) and lab (sshd hosts in network namespaces).
# The pytest session brings the devcloud and lab up (or reuses running ones) and tears down what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
printf '\n==> pytest\n'
exec .venv/bin/python -m pytest "$@"
