#!/usr/bin/env bash
# Installs the real programs the tests talk to (OctoPrint, Moonraker, Klippy…),
# each in a virtual environment of its own under .peers/, so they never pin our
# dependencies. One script per program in scripts/peers/, each idempotent: it
# returns at once when its program is already installed at the wanted version.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
for script in scripts/peers/*.sh; do
  bash "$script"
done
