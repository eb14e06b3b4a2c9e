#!/usr/bin/env bash
# OctoPrint (with its bundled virtual printer plugin) for the OctoPrint driver's tests,
# in a virtual environment of its own under .peers/octoprint/ so it never pins our
# dependencies. Idempotent: returns at once when the wanted version is installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION="1.11.8"
DIR=".peers/octoprint"
STAMP="$DIR/.installed-$VERSION"
[ -f "$STAMP" ] && exit 0
PYTHON="${PYTHON:-python3}"
echo "setup: installing OctoPrint $VERSION into $DIR"
rm -rf "$DIR"
"$PYTHON" -m venv "$DIR"
"$DIR/bin/python" -m pip install -q --upgrade pip
"$DIR/bin/python" -m pip install -q "OctoPrint==$VERSION"
"$DIR/bin/octoprint" --version >/dev/null
touch "$STAMP"
