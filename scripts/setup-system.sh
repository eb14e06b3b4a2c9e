#!/usr/bin/env bash
# Installs the system programs Farmhand's tests and demo use, when missing.
# The list is scripts/system-packages.txt (or the file given as the first
# argument, - for stdin): one "COMMAND PACKAGE" a line. As root it installs what is missing
# with apt-get. When something is missing and cannot be installed (not root,
# apt-get failed, or the package did not bring its command) it fails naming it:
# a test run without Blender or PrusaSlicer would skip a quarter of the
# integration tests and still look green.
#
# A developer without root may go on anyway with FARMHAND_ALLOW_MISSING=1: a
# warning, and the tests that need the missing programs are skipped and listed
# at the end of the run. Never under CI=true.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
list="${1:-$here/system-packages.txt}"

# A COMMAND that starts with / is a file the package brings (a header, a library); globs allowed.
found() {
  case "$1" in
    /*) compgen -G "$1" >/dev/null ;;
    *) command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] ;;
  esac
}
on_ci() { case "${CI:-}" in 1|[Tt]rue|TRUE|[Yy]es) return 0 ;; *) return 1 ;; esac; }
fail() { echo "setup-system: ERROR: $*" >&2; exit 1; }

# "COMMAND PACKAGE" for each listed command not found.
missing() {
  local cmd pkg
  while read -r cmd pkg _; do
    case "$cmd" in ''|'#'*) continue ;; esac
    [ -n "${pkg:-}" ] || fail "$list: line '$cmd' names no package"
    found "$cmd" || echo "$cmd $pkg"
  done <<<"$listing"
}

listing="$(cat -- "$list")" || fail "cannot read the package list $list"
lacking="$(missing)"
[ -z "$lacking" ] && exit 0
commands="$(awk '{print $1}' <<<"$lacking" | paste -sd' ')"
mapfile -t packages < <(awk '{print $2}' <<<"$lacking" | sort -u)

if [ "$(id -u)" -ne 0 ]; then
  what="missing programs: $commands (as root: apt-get install ${packages[*]}, or run make setup as root)"
  if [ "${FARMHAND_ALLOW_MISSING:-}" = 1 ] && ! on_ci; then
    echo "setup-system: WARNING: $what; FARMHAND_ALLOW_MISSING=1, so the tests that need them will be skipped" >&2
    exit 0
  fi
  fail "$what"
fi

echo "setup-system: apt-get install ${packages[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || fail "apt-get update failed, so ${packages[*]} cannot be installed"
apt-get install -y -qq --no-install-recommends "${packages[@]}" \
  || fail "apt-get could not install ${packages[*]} (for $commands)"
still="$(missing)"
[ -z "$still" ] || fail "installed ${packages[*]}, yet still missing: $(awk '{print $1 " (from " $2 ")"}' <<<"$still" | paste -sd' ')"
