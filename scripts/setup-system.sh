#!/usr/bin/env bash
# Installs the system packages Farmhand's tests and demo use, when missing.
# A line is "COMMAND PACKAGE", or "/PATH PACKAGE" for a package that brings a file, not a command.
# The list is scripts/system-packages.txt. Runs apt-get only as root; otherwise
# it says what to install and goes on.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
need=()
while read -r cmd pkg; do
  case "$cmd" in ''|'#'*) continue ;; esac
  case "$cmd" in
    /*) compgen -G "$cmd" >/dev/null || need+=("$pkg") ;;  # a file (a header, a library): a path, globs allowed
    *) command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need+=("$pkg") ;;
  esac
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
