"""What the suite needs installed, and what a test does when it is missing.

A test that needs a program (Blender, PrusaSlicer, Chromium, Mosquitto), a real
peer server (``.peers/NAME``, from scripts/peers/NAME.sh) or an optional Python
package asks for it here. Locally a missing one is a skip, and
the end of the run lists every test that did not run and what it lacked. Under
``CI=true`` the same skip fails the test, naming what is missing: a CI machine
without Blender must not pass with the render tests unrun.

Every such skip reason starts with ``MISSING``; the hooks below (imported by
``tests/conftest.py``) recognise it, and also the reason ``pytest.importorskip``
writes, so a skip written without these helpers is caught as well.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

MISSING = "missing:"
SETUP = "make setup installs it: programs from scripts/system-packages.txt, Python packages from pyproject.toml"
# importorskip's own reason, for a skip that did not go through package().
_IMPORTORSKIP = re.compile(r"^could not import ")


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing_reason(what: str) -> str:
    return f"{MISSING} {what} ({SETUP})"


def find_program(name: str, *also: str) -> str | None:
    """``name`` on PATH or in /usr/sbin (Mosquitto lives there), or the first of ``also`` that exists."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin")
    if found:
        return found
    return next((p for p in also if Path(p).exists()), None)


def program(name: str, *also: str) -> str:
    """The path of ``name``; skips the test (fails it under CI) when it is not installed."""
    found = find_program(name, *also)
    if found is None:
        pytest.skip(missing_reason(f"program {name} is not installed"))
    return found


def needs_program(name: str, *also: str) -> pytest.MarkDecorator:
    """A mark for a test or module that runs ``name``."""
    return pytest.mark.skipif(find_program(name, *also) is None,
                              reason=missing_reason(f"program {name} is not installed"))


PEERS = Path(__file__).resolve().parent.parent / ".peers"


def peer(name: str) -> Path:
    """The folder (its own virtual environment) of the peer server scripts/peers/NAME.sh installs;
    skips the test (fails it under CI) when it is not installed."""
    home = PEERS / name
    if not home.is_dir():
        pytest.skip(missing_reason(f"peer {name} is not installed under .peers/ (scripts/peers/{name}.sh)"))
    return home


def package(module: str) -> Any:
    """Import an optional package; skip the test (fail it under CI) when it is not installed."""
    return pytest.importorskip(module, reason=missing_reason(f"Python package {module} is not installed"))


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")


def is_missing(reason: str) -> bool:
    return reason.startswith(MISSING) or bool(_IMPORTORSKIP.match(reason))


def _fail_on_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not (report.skipped and on_ci()):
        return
    reason = _reason(report)
    if is_missing(reason):
        report.outcome = "failed"
        report.longrepr = f"CI=true and this test could not run: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    _fail_on_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # type: ignore[no-untyped-def]
    outcome = yield
    _fail_on_ci(outcome.get_result())


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say which tests did not run and what they lacked, grouped by reason."""
    by_reason: dict[str, list[str]] = defaultdict(list)
    for report in terminalreporter.stats.get("skipped", []):
        by_reason[_reason(report)].append(report.nodeid)
    if not by_reason:
        return
    total = sum(map(len, by_reason.values()))
    terminalreporter.section(f"{total} test(s) did not run", sep="-", yellow=True)
    for reason, nodeids in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
        files = sorted({n.split("::", 1)[0] for n in nodeids})
        terminalreporter.write_line(f"{len(nodeids)} skipped: {reason}")
        terminalreporter.write_line(f"    in {', '.join(files)}")
    if any(is_missing(r) for r in by_reason):
        terminalreporter.write_line("Under CI=true each of these missing programs or packages fails the run.")
