"""``farmhand print PORT FILE`` against the virtual printer: the summary, the exit status, the progress bar."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from farmhand import print_cmd
from farmhand.sim.printer import VirtualPrinter

pytestmark = pytest.mark.integration


def moves(n: int) -> str:
    return "".join(f"G1 X{10 * (i % 2)} Y0 F6000\n" for i in range(n))


def args_for(port: Path | str, file: Path, **extra: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    print_cmd.add_arguments(parser)
    options = [f"--{k.replace('_', '-')}={v}" for k, v in extra.items() if v is not True]
    options += [f"--{k.replace('_', '-')}" for k, v in extra.items() if v is True]
    return parser.parse_args([str(port), str(file), *options])


@pytest.fixture
async def printer(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[VirtualPrinter]:
    p = VirtualPrinter(tmp_path / "printer", seed=1, **getattr(request, "param", {"speed_factor": 1e5}))
    await p.start()
    yield p
    await p.stop()


async def test_prints_a_file_and_says_how_it_went(printer: VirtualPrinter, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    job = tmp_path / "part.gcode"
    job.write_text("; a part\n" + moves(300))
    code = await print_cmd.run_from_args(args_for(printer.link, job, baud=250000))
    out = capsys.readouterr().out
    assert code == 0
    assert "part.gcode on" in out and "completed" in out and "lines 300/300" in out
    assert "resends 0, errors: none" in out
    assert [c for _, c in printer.executed][-301:] == [*moves(300).splitlines(), "M400"]


async def test_the_json_summary_and_the_progress_bar(printer: VirtualPrinter, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    job = tmp_path / "part.gcode"
    job.write_text(moves(200))
    bar = io.StringIO()
    result = await print_cmd.print_file(str(printer.link), job, baud=250000, progress=bar)
    assert result.ok and result.lines == result.lines_done == 200 and result.exit_code == 0
    assert "100.0% 200/200 lines" in bar.getvalue() and bar.getvalue().endswith("\n")
    code = await print_cmd.run_from_args(args_for(printer.link, job, json=True))
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and summary["ok"] is True and summary["lines"] == 200 and summary["bytes_sent"] > 200 * 10


@pytest.mark.parametrize("printer", [{"speed_factor": 50.0}], indirect=True)
async def test_a_halted_printer_fails_the_print_with_its_own_words(printer: VirtualPrinter, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    job = tmp_path / "long.gcode"
    job.write_text(moves(3000))
    run = asyncio.create_task(print_cmd.run_from_args(args_for(printer.link, job)))
    async with asyncio.timeout(30):
        while len(printer.executed) < 50:
            await asyncio.sleep(0.01)
    printer.inject_kill()
    code = await run
    out = capsys.readouterr().out
    assert code == 1 and "FAILED: Printer halted. kill() called!" in out
    done = int(out.split("lines ")[1].split("/")[0])
    assert 0 < done < 3000  # how far it got, though the halt made the driver forget its lines


async def test_refuses_a_file_it_cannot_send_before_anything_moves(printer: VirtualPrinter, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.gcode"
    bad.write_text("G28\nM117 50*50\n")
    assert await print_cmd.run_from_args(args_for(printer.link, bad)) == 2
    assert "bad.gcode:2: '*' is reserved for checksums" in capsys.readouterr().out
    assert await print_cmd.run_from_args(args_for(printer.link, tmp_path / "missing.gcode")) == 2
    assert "missing.gcode: no such file" in capsys.readouterr().err
    assert not [c for _, c in printer.executed if c.startswith("G28")]


async def test_a_port_where_nothing_answers_exits_three(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = tmp_path / "part.gcode"
    job.write_text(moves(10))
    code = await print_cmd.run_from_args(args_for(tmp_path / "nothing-here", job, connect_timeout=0.5))
    assert code == 3 and "the printer did not answer" in capsys.readouterr().out


@pytest.mark.parametrize("printer", [{"speed_factor": 50.0}], indirect=True)
async def test_ctrl_c_cancels_the_job_with_the_cancel_script_and_exits_130(printer: VirtualPrinter,
                                                                           tmp_path: Path) -> None:
    job = tmp_path / "long.gcode"
    job.write_text(moves(3000))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "farmhand.print_cmd", str(printer.link), str(job), "--baud", "250000",
        stdout=asyncio.subprocess.PIPE)
    async with asyncio.timeout(30):
        while len(printer.executed) < 100:
            await asyncio.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130 and b"FAILED: cancelled" in out
    assert [c for _, c in printer.executed][-1] == "M84"  # the last line of marlin2's cancel script
