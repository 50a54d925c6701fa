#!/usr/bin/env bash
# Set everything up and run the test suite: unit tests, static checks, and the integration tests
# against the real devcloud (OpenStack), lab (sshd hosts in network namespaces), DNS and databases.
# The pytest session brings what it needs up (or adopts a live one, or cleans a dead one a killed
# run left) and tears down what it started.
#
#   bash scripts/test.sh            the suite (.ci/run): every behaviour, smallest data; <= 15 min
#   bash scripts/test.sh --scale    the suite plus the scale tier: the whole 50-system example
#                                   wave and the failover drills repeated (GOVCLOUD_DRILL_RUNS, 3)
#
# Other arguments go to pytest. The whole suite first takes down live stacks a demo or a developer left
# running (one line each; GOVCLOUD_TEST_ADOPT=1 runs beside them instead); with pytest arguments
# nothing is taken down. A JUnit report is written to .test-results/junit.xml.
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
whole=1  # the whole suite (no pytest arguments but --scale): it takes down live stacks left running
for a in "$@"; do
  if [ "$a" = "--scale" ]; then
    export GOVCLOUD_DRILL_RUNS="${GOVCLOUD_DRILL_RUNS:-3}"
  else
    whole=0
  fi
  args+=("$a")
done

# Python writes the byte code of what it imports (.venv is installed with --no-compile): with
# PYTHONDONTWRITEBYTECODE set, as in some CI images, every govcloud, ansible and openstack process
# compiled openstacksdk, ansible and paramiko again (about 2.5 s of CPU each)
unset PYTHONDONTWRITEBYTECODE
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
if [ "$whole" = 1 ] && [ "${GOVCLOUD_TEST_ADOPT:-}" != 1 ]; then
  # a demo's or a developer's live stacks (devcloud, lab, monitor) would be shared with the tests: the
  # suite builds its own instead (a killed run's dead ones are left to the ups, which say so)
  .venv/bin/python -m devcloud.handover
fi
xdist=()
if [ "$whole" = 1 ]; then
  # two workers: one runs every integration test in order on the one cloud and lab, the other the unit
  # tests and static checks meanwhile, on the CPU the integration tests leave (tests/conftest.py)
  xdist=(-n 2)
fi
printf '\n==> pytest\n'
exec .venv/bin/python -m pytest "${xdist[@]}" "${args[@]}"
