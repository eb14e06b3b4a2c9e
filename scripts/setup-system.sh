#!/usr/bin/env bash
# Installs the system packages Farmhand's tests and demo use, when missing.
# Runs apt-get only as root; otherwise it says what to install and goes on.
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v prusa-slicer >/dev/null 2>&1 || need+=(prusa-slicer)
# Render nodes run Blender on the command line; the render tests use the real one.
command -v blender >/dev/null 2>&1 || need+=(blender)
# The panel's browser tests drive headless Chromium through Playwright.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing system packages: ${need[*]} (install them with: sudo apt-get install ${need[*]})" >&2
  exit 0
fi
echo "setup: apt-get install ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}"
