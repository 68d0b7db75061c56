#!/usr/bin/env bash
# Install the system programs the tests drive (real clients and servers), when missing.
# As root on Debian they are installed with apt-get; otherwise their names are printed.
set -euo pipefail

# command → Debian package
declare -A NEEDED=(
  [git]=git
  [git-lfs]=git-lfs
  [docker-registry]=docker-registry
  [skopeo]=skopeo
  [chromium]=chromium
  [node]=nodejs
  [npm]=npm
  [curl]=curl
  [redis-server]=redis-server
  [mvn]=maven
  [nginx]=nginx
)

missing=()
for cmd in "${!NEEDED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEEDED[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "Missing system packages (install them with your package manager): ${missing[*]}" >&2
  echo "Tests that need them will be skipped (and fail under CI=true)." >&2
fi
