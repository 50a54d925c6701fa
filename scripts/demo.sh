#!/usr/bin/env bash
# The demo: set everything up, bring up the local cloud and lab, then run govcloud's main job on
# the shipped Guangdong example: validate the inventories, plan the migration waves, provision the
# departments' landing zones on the devcloud (plan, apply that plan, re-plan: no changes), configure
# the lab's site hosts with the Ansible baseline, migrate the first wave while Prometheus watches,
# and run a site-loss failover drill on the lab's PostgreSQL (then fail back).
set -euo pipefail
cd "$(dirname "$0")/.."
# Python writes the byte code of what it imports (.venv is installed with --no-compile): with
# PYTHONDONTWRITEBYTECODE set, as in some CI images, every govcloud, ansible and openstack process
# compiled openstacksdk, ansible and paramiko again (about 2.5 s of CPU each)
unset PYTHONDONTWRITEBYTECODE
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
step "devcloud monitor up: govcloud exporter + Prometheus (loopback), watching the journal and the sites"
devcloud monitor up --root "$PWD"

step "devcloud lab legacy: the first wave's legacy hosts in the old machine room (the sample app, an nginx site, a DokuWiki; data)"
mapfile -t WAVE1 < <(python -c 'import sys, yaml
plan = yaml.safe_load(open("migration_plans/wave-plan.yaml"))
print("\n".join(s["id"] for s in plan["waves"][0]["systems"]))')
devcloud lab legacy --from inventories/ "${WAVE1[@]/#/--systems=}"

step "devcloud lab dns up: one BIND 9 primary per site for the service zone svc.gdgov.internal."
devcloud lab dns up

step "govcloud migrate run: wave 1 (${#WAVE1[@]} systems) onto the cloud"
# The example's windows are Saturday/Sunday nights (Asia/Shanghai): a weekday demo cuts over outside
# them, which needs the explicit, audited --outside-window.
govcloud migrate run wave-plan --wave 1 --concurrency 8 --known-hosts "$LAB/known_hosts" \
  --ssh-key "$LAB/controller/id_ed25519" --control-path-dir "$LAB/cp" --outside-window
step "govcloud migrate status: per-system outcome and measured downtime"
govcloud migrate status wave-plan
step "govcloud dns status: every system's name as each site's server answers it"
govcloud dns status
step "govcloud audit verify: the hash-chained audit log of the run"
govcloud audit verify

step "failover: PostgreSQL primary gz-a, sync standby gz-b, async standby st-a (lab hosts)"
devcloud lab pg up
govcloud failover status
step "govcloud failover drill --scenario site-loss:gz-a (cut gz-a, keep writing, measure RTO/RPO)"
govcloud failover drill --scenario site-loss:gz-a
step "govcloud failover failback --switch-back: gz-a rejoins (pg_rewind) and becomes primary again"
govcloud failover failback --switch-back
govcloud failover status

cat <<MSG

Demo done. Look at:
  http://127.0.0.1:9090               Prometheus (alerts: /alerts; try govcloud_migration_systems, govcloud_site_up)
  http://127.0.0.1:9477/metrics       the govcloud exporter
  .govcloud/drills/                   the drill report (JSON), also printed above
  govcloud migrate status wave-plan   per-system state, bytes, downtime; govcloud migrate log SYSTEM
  migration_plans/wave-plan.yaml      the wave plan (check it: govcloud plan check migration_plans/wave-plan.yaml)
  $STATE/provision-plan.json   the landing-zone plan that was applied
  openstack --os-cloud gz server list   (OS_CLIENT_CONFIG_FILE=$OS_CLIENT_CONFIG_FILE)
  devcloud status / devcloud lab status / devcloud monitor status
Stop everything with: devcloud monitor down && devcloud lab down && devcloud down
MSG
