#!/usr/bin/env bash
# Install Debian's Prometheus, promtool and Alertmanager (for monitoring/ and its tests) without
# starting any system service: a temporary policy-rc.d (exit 101) keeps the postinst from starting
# prometheus on 0.0.0.0:9090. Idempotent: a second run only checks. Call from scripts/bootstrap.sh.
set -euo pipefail
PKGS=(prometheus prometheus-alertmanager)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "monitoring: Prometheus, Alertmanager and promtool present ($(promtool --version 2>&1 | head -n1 | cut -d' ' -f1-3))"
  exit 0
fi
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 0755 "$policy"; made_policy=1
fi
trap '[ "$made_policy" = 1 ] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || echo "apt-get update failed; trying the install anyway" >&2
apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
echo "monitoring: installed ${missing[*]} ($(promtool --version 2>&1 | head -n1 | cut -d' ' -f1-3))"
