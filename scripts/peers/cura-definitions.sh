#!/usr/bin/env bash
# CuraEngine (Debian's cura-engine, in scripts/system-packages.txt) cannot slice without Cura's
# machine definitions (fdmprinter.def.json and fdmextruder.def.json), which Debian ships in the
# `cura` GUI package. This takes just those two files out of that package, without installing it
# (and its Qt stack), into .peers/cura/definitions/. Returns at once when they are there.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=.peers/cura/definitions
if [ -f "$dest/fdmprinter.def.json" ] && [ -f "$dest/fdmextruder.def.json" ]; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
  echo "peers/cura-definitions: needs apt-get and dpkg-deb (Debian); the CuraEngine tests will skip (fail under CI=true)" >&2
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
if ! (cd "$work" && apt-get download -qq cura >/dev/null 2>&1); then
  # Stale or missing package lists (a fresh machine): refresh them once and try again.
  apt-get update -qq >/dev/null 2>&1 || true
  if ! (cd "$work" && apt-get download -qq cura >/dev/null 2>&1); then
    echo "peers/cura-definitions: 'apt-get download cura' failed; the CuraEngine tests will skip (fail under CI=true)" >&2
    exit 0
  fi
fi
dpkg-deb -x "$work"/cura_*.deb "$work/x"
mkdir -p "$dest"
for f in fdmprinter.def.json fdmextruder.def.json; do
  cp "$work/x/usr/share/cura/resources/definitions/$f" "$dest/$f.tmp"
  mv "$dest/$f.tmp" "$dest/$f"
done
echo "peers/cura-definitions: installed into $dest"
