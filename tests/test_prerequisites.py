"""The suite cannot go green by skipping: under CI=true a test that lacks a program or
package fails naming it; locally it is skipped, and the end of the run says what did
not run and why. Set-up fails, naming them, when it cannot install the programs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .prerequisites import program

ROOT = Path(__file__).resolve().parent.parent
SETUP_SYSTEM = ROOT / "scripts" / "setup-system.sh"

# Each way a test asks for something this machine lacks, and one test that needs nothing.
LACKING = '''
import pytest
from tests.prerequisites import needs_program, package, peer, program

def test_runs_a_program_that_is_not_installed():
    program("farmhand-no-such-program")

@needs_program("farmhand-no-such-marked-program")
def test_marked_for_a_program_that_is_not_installed():
    pass

def test_talks_to_a_peer_server_that_is_not_installed():
    peer("farmhand-no-such-peer")

def test_imports_a_package_that_is_not_installed():
    package("farmhand_no_such_package")

def test_imports_without_the_helper():
    pytest.importorskip("farmhand_no_such_module")

def test_skipped_for_another_reason():
    pytest.skip("only on a big-endian machine")

def test_needs_nothing():
    assert True
'''


def run_suite(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_lacking.py").write_text(LACKING)
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(ROOT)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                           "tests.prerequisites", "test_lacking.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def test_locally_a_missing_program_is_a_skip_and_the_summary_names_it(tmp_path: Path) -> None:
    run = run_suite(tmp_path, ci=None)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed, 6 skipped" in run.stdout
    summary = run.stdout.split("6 test(s) did not run", 1)[1]
    for missing in ("program farmhand-no-such-program is not installed",
                    "program farmhand-no-such-marked-program is not installed",
                    "Python package farmhand_no_such_package is not installed",
                    "peer farmhand-no-such-peer is not installed under .peers/",
                    "farmhand_no_such_module", "only on a big-endian machine"):
        assert missing in summary, summary


def test_under_ci_a_missing_program_or_package_fails_the_run_naming_it(tmp_path: Path) -> None:
    run = run_suite(tmp_path, ci="true")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "4 failed, 1 passed, 1 skipped, 1 error" in run.stdout, run.stdout  # the mark fails at set-up
    failures = [line for line in run.stdout.splitlines() if "CI=true and this test could not run: missing" in line]
    for missing in ("farmhand-no-such-program", "farmhand-no-such-marked-program", "farmhand_no_such_package",
                    "farmhand-no-such-peer"):
        assert any(missing in line for line in failures), run.stdout
    assert "could not import 'farmhand_no_such_module'" in run.stdout


def _unprivileged() -> list[str]:
    if os.geteuid() != 0:
        return []
    return [program("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.mark.parametrize(("env", "code"), [({}, 1), ({"CI": "true", "FARMHAND_ALLOW_MISSING": "1"}, 1),
                                           ({"FARMHAND_ALLOW_MISSING": "1"}, 0)])
def test_set_up_that_cannot_install_a_program_fails_naming_it(env: dict[str, str], code: int) -> None:
    listing = "# a comment\nsh dash\nfarmhand-no-such-command farmhand-no-such-package\n"
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "FARMHAND_ALLOW_MISSING")}
    # The list comes on stdin: an ordinary user can read neither pytest's tmp folders nor /dev/stdin.
    run = subprocess.run([*_unprivileged(), "bash", str(SETUP_SYSTEM), "-"], input=listing,
                         env={**base, **env}, capture_output=True, text=True, timeout=30)
    assert run.returncode == code, run.stderr
    assert "farmhand-no-such-command" in run.stderr and "farmhand-no-such-package" in run.stderr
    assert ("ERROR" if code else "WARNING") in run.stderr and "dash" not in run.stderr


def test_set_up_with_everything_installed_does_nothing() -> None:
    run = subprocess.run(["bash", str(SETUP_SYSTEM), "-"], input="sh dash\nbash bash\n",
                         env={**os.environ, "CI": "true"}, capture_output=True, text=True, timeout=30)
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")


def test_the_package_list_names_every_program_the_suite_asks_for() -> None:
    listed = {line.split()[0] for line in (ROOT / "scripts" / "system-packages.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    asked = set()
    for test in Path(__file__).parent.glob("*.py"):
        text = test.read_text()
        asked |= {part.split("\"", 1)[0] for part in text.split("program(\"")[1:]}
    asked -= {"farmhand-no-such-program", "farmhand-no-such-marked-program", "st"}  # st: pip's schemathesis
    assert asked and asked <= listed, f"add to scripts/system-packages.txt: {sorted(asked - listed)}"
