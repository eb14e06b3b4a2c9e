#!/usr/bin/env bash
# Installs the system packages Farmhand's tests and demo use, when missing.
# The list is scripts/system-packages.txt. Runs apt-get only as root; otherwise
# it says what to install and goes on.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
need=()
while read -r cmd pkg; do
  case "$cmd" in ''|'#'*) continue ;; esac
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need+=("$pkg")
done < "$here/system-packages.txt"
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing system packages: ${need[*]} (install them with: sudo apt-get install ${need[*]})" >&2
  exit 0
fi
echo "setup: apt-get install ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}"
