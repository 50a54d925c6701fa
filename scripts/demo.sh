#!/usr/bin/env bash
# The demo: set everything up, bring up the local cloud and lab, then run govcloud's main job on
# the shipped Guangdong example (validate the inventories, plan the migration waves, show the plan).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }

step "devcloud up (two-region OpenStack on loopback)"
devcloud up
step "devcloud lab up (three sites + the legacy machine room, in network namespaces)"
devcloud lab up
export OS_CLIENT_CONFIG_FILE=${DEVCLOUD_HOME:-/var/tmp/govcloud-devcloud}/clouds.yaml

step "govcloud validate"
govcloud validate
step "govcloud plan"
govcloud plan
step "the plan (first wave)"
sed -n '1,/number: 2/p' migration_plans/wave-plan.yaml | head -n 20
cat <<MSG

Demo done. Look at:
  migration_plans/wave-plan.yaml     the plan (check it: govcloud plan check migration_plans/wave-plan.yaml)
  openstack --os-cloud gz server list   (OS_CLIENT_CONFIG_FILE=$OS_CLIENT_CONFIG_FILE)
  devcloud status / devcloud lab status
Stop everything with: devcloud lab down && devcloud down
MSG
