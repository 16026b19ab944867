#!/usr/bin/env bash
# Stop at once, saying what to do, when Apache's user cannot read PATH (the venv that the
# tests' and the demo's Apache import authn from). Only as root: Apache's children then run
# as www-data, and a clone under a 0700 folder (root's home) is out of their reach, which
# made every protected page a 500 (No module named 'authn'). Not root: Apache runs as us.
# Usage: scripts/apache-can-read.sh PATH
set -euo pipefail
path="$(realpath -m "$1")"
[ "$(id -u)" -eq 0 ] || exit 0
id -u www-data >/dev/null 2>&1 || exit 0
runuser -u www-data -- test -r "$path" && exit 0
blocked="$path"
dir=""
IFS=/ read -r -a parts <<<"${path#/}"
for part in "${parts[@]}"; do
  dir="$dir/$part"
  if ! runuser -u www-data -- test -x "$dir" 2>/dev/null && [ -d "$dir" ]; then
    blocked="$dir"
    break
  fi
done
echo "authn: Apache's user www-data cannot read $path ($blocked is closed to it): clone into a folder it can reach (such as /srv/authn), or open the way with: chmod o+x $blocked" >&2
exit 1
