#!/usr/bin/env bash
# Moonraker (Klipper's API server) from PyPI, in a venv of its own under .peers/moonraker/.
# The Moonraker driver's tests run it in front of our Klippy simulator (farmhand/sim/klippy.py).
# Idempotent: returns at once when the wanted version is installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/peer-venv.sh
# Moonraker's [authorization] signs its tokens with libsodium (through libnacl, by ctypes): a library, no
# command, so system-packages.txt (one COMMAND PACKAGE a line) cannot name it.
if ! ldconfig -p 2>/dev/null | grep -q 'libsodium\.so'; then
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libsodium23 >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libsodium23; }
  else
    echo "setup: Moonraker needs libsodium (sudo apt-get install libsodium23)" >&2
  fi
fi
peer_venv moonraker "moonraker==0.11.0" python -c "import moonraker.server, libnacl.sign"
