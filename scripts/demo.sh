#!/usr/bin/env bash
# The demo: set everything up, bring up the local cloud and lab, then run govcloud's main job on
# the shipped Guangdong example: validate the inventories, plan the migration waves, provision the
# departments' landing zones on the devcloud (plan, apply that plan, re-plan: no changes), and
# configure the lab's site hosts with the Ansible baseline.
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
step "the plan (start of the first wave)"
sed -n '1,/number: 2/p' migration_plans/wave-plan.yaml | head -n 20

STATE=${GOVCLOUD_STATE_DIR:-$HOME/.local/state/govcloud}
LAB=${DEVCLOUD_HOME:-/var/tmp/govcloud-devcloud}/lab
mkdir -p "$STATE"
step "govcloud provision plan: the landing zones the inventories need, diffed against the real cloud"
rc=0; govcloud provision plan --out "$STATE/provision-plan.json" || rc=$?
[ "$rc" -eq 0 ] || [ "$rc" -eq 3 ] || exit "$rc"     # 3: changes pending
step "govcloud provision apply: exactly that saved plan"
govcloud provision apply "$STATE/provision-plan.json"
step "govcloud provision plan again: nothing left to do"
govcloud provision plan
step "govcloud hosts configure: the baseline on the lab's site hosts (Ansible)"
govcloud hosts configure --hosts-file playbooks/lab-hosts.yml --known-hosts "$LAB/known_hosts" \
  --control-path-dir "$LAB/cp" --baseline-root /srv/govcloud-root
cat <<MSG

Demo done. Look at:
  migration_plans/wave-plan.yaml     the wave plan (check it: govcloud plan check migration_plans/wave-plan.yaml)
  $STATE/provision-plan.json   the landing-zone plan that was applied
  openstack --os-cloud gz server list   (OS_CLIENT_CONFIG_FILE=$OS_CLIENT_CONFIG_FILE)
  devcloud status / devcloud lab status
Stop everything with: devcloud lab down && devcloud down
MSG
