#!/usr/bin/env bash
# Prusa's own PrusaLink (the Pi-based one, PyPI "prusalink") in a venv of its own under .peers/prusalink/.
# The PrusaLink driver's tests log in to it (digest and X-Api-Key) and read its v1 status. It runs
# without a printer attached: it then reports ERROR "Serial device does not exist", which the tests use.
# Needs libcap headers (python-prctl builds against them) and libturbojpeg at run time: both are in
# scripts/system-packages.txt. Idempotent: returns at once when the wanted version is installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/peer-venv.sh
peer_venv prusalink "prusalink==0.8.1" prusalink --version
