#!/usr/bin/env bash
# Install the system packages the local stack and the build need (Debian/Ubuntu).
# As root: apt-get installs what is missing. Otherwise: names the packages and fails.
# Usage: sysdeps.sh [extra-package ...]   (e.g. chromium for the browser tests)
set -euo pipefail

declare -A NEED=(
  [mariadbd]=mariadb-server
  [mariadb]=mariadb-client
  [sshd]=openssh-server
  [ssh-keygen]=openssh-client
  [sftp]=openssh-client
  [ssh]=openssh-client
  [pkg-config]=pkg-config
  [gcc]=gcc
)
missing=()
for cmd in "${!NEED[@]}"; do
  if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1; then missing+=("${NEED[$cmd]}"); fi
done
# headers to build mysqlclient
if ! pkg-config --exists libmariadb 2>/dev/null && ! pkg-config --exists mysqlclient 2>/dev/null; then
  missing+=(libmariadb-dev)
fi
# python3-venv: needed to create the virtualenv on Debian
if ! python3 -c "import ensurepip" >/dev/null 2>&1; then missing+=(python3-venv); fi
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "sysdeps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # a package install may start the system's own sshd/mariadb; ours run on private ports, so leave them
  exit 0
fi
echo "sysdeps: missing system packages: ${missing[*]}" >&2
echo "sysdeps: install them with: sudo apt-get install -y ${missing[*]}" >&2
exit 1
