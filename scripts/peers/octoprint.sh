#!/usr/bin/env bash
# OctoPrint (with its bundled virtual printer plugin) for the OctoPrint driver's tests,
# in a virtual environment of its own under .peers/octoprint/ so it never pins our
# dependencies. Idempotent: returns at once when the wanted version is installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/peer-venv.sh
peer_venv octoprint "OctoPrint==1.11.8" octoprint --version
