#!/usr/bin/env bash
# Install (as root) or name (otherwise) the Debian packages authn needs to run, test and demo,
# or, with --deb, to build the Debian package (make deb).
# Usage: scripts/system-deps.sh [--deb] [extra-package ...]
set -euo pipefail

if [ "${1:-}" = "--deb" ]; then
  shift
  # debian/control's Build-Depends, and lintian
  packages=(
    dpkg-dev debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools
    python3-bcrypt python3-passlib help2man lintian
    "$@"
  )
else
  # The dev venv compiles python-ldap for the LDAP tests (gcc and headers); an install from
  # the Debian package, or a password-file venv, needs none of them.
  packages=(
    apache2 apache2-utils libapache2-mod-python libapache2-mod-php
    slapd ldap-utils
    redis-server fail2ban haproxy
    python3 python3-venv python3-dev gcc libldap2-dev libsasl2-dev
    make curl openssl wrk
    chromium chromium-driver
    "$@"
  )
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "authn: missing Debian packages. As root, run:" >&2
  echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "authn: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
# Debian's postinst scripts may start the system services; our tests start their own.
for svc in apache2 slapd redis-server fail2ban haproxy; do
  service "$svc" stop >/dev/null 2>&1 || true
done
