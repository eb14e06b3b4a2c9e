#!/usr/bin/env bash
# Moonraker (Klipper's API server) from PyPI, in a venv of its own under .peers/moonraker/.
# The Moonraker driver's tests run it in front of our Klippy simulator (farmhand/sim/klippy.py).
# Idempotent: returns at once when the wanted version is installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
version="0.11.0"
venv=".peers/moonraker"
stamp="$venv/.installed-$version"
[ -f "$stamp" ] && exit 0
python="${PYTHON:-python3}"
echo "setup: installing moonraker $version into $venv"
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "moonraker==$version"
"$venv/bin/python" -c "import moonraker.server" >/dev/null
touch "$stamp"
