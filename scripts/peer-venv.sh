# Sourced by scripts/peers/*.sh: one program from PyPI in a virtual environment of its own under
# .peers/NAME, so it never pins our dependencies.
#
#   peer_venv NAME REQUIREMENT [COMMAND ARGS...]
#
# Returns at once when REQUIREMENT ("pkg==version") is installed there (a stamp file per version);
# otherwise makes the venv afresh, installs it, and runs COMMAND (one of the venv's bin/, e.g.
# `python -c "import …"`) once, so a broken install fails here rather than in a test.
peer_venv() {
  local name=$1 requirement=$2
  shift 2
  local venv=".peers/$name"
  local stamp="$venv/.installed-${requirement##*==}"
  [ -f "$stamp" ] && return 0
  echo "setup: installing $requirement into $venv"
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q "$requirement"
  if [ $# -gt 0 ]; then "$venv/bin/$1" "${@:2}" >/dev/null; fi
  touch "$stamp"
}
