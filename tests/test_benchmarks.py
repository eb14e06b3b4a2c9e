"""`make bench` runs every benchmark's --quick mode: each one it names must take that flag."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def make_benches() -> list[str]:
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^BENCHES := (.+)$", makefile, re.MULTILINE)
    assert match, "the Makefile no longer lists its benchmarks in BENCHES"
    return match.group(1).split()


def test_make_bench_names_every_benchmark_module() -> None:
    helpers = {"__init__", "serial_reference", "serial_klippy", "upload_client", "estimate_cases", "network_world",
               "network_agent", "fleet_farms"}  # not benchmarks
    modules = {p.stem for p in (ROOT / "bench").glob("*.py")} - helpers
    assert set(make_benches()) == modules


@pytest.mark.integration
@pytest.mark.parametrize("name", make_benches())
def test_each_benchmark_has_a_quick_mode(name: str) -> None:
    out = subprocess.run([sys.executable, "-m", f"bench.{name}", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--quick" in out.stdout


@pytest.mark.integration
def test_the_ingest_benchmark_uploads_through_the_authenticated_api() -> None:
    out = subprocess.run([sys.executable, "-m", "bench.hub_ingest", "--quick"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["events_per_s"] > 0 and figures["upload_mib_per_s"] > 0


def test_each_printer_of_a_serial_case_keeps_its_own_record(tmp_path: Path) -> None:
    from bench.serial_stream import Case, printer_files

    links, records = printer_files(Case("segments", 250000, True, printers=4, noise=0.01), tmp_path)
    assert len(set(records)) == len(set(links)) == 4
    assert not set(records) & set(links)
