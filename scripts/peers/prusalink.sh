#!/usr/bin/env bash
# Prusa's own PrusaLink (the Pi-based one, PyPI "prusalink") in a venv of its own under .peers/prusalink/.
# The PrusaLink driver's tests log in to it (digest and X-Api-Key) and read its v1 status. It runs
# without a printer attached: it then reports ERROR "Serial device does not exist", which the tests use.
# Needs libcap headers (python-prctl builds against them) and libturbojpeg at run time: both are in
# scripts/system-packages.txt. Idempotent: returns at once when the wanted version is installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
version="0.8.1"
venv=".peers/prusalink"
stamp="$venv/.installed-$version"
[ -f "$stamp" ] && exit 0
python="${PYTHON:-python3}"
echo "setup: installing prusalink $version into $venv"
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "prusalink==$version"
"$venv/bin/prusalink" --version >/dev/null
touch "$stamp"
