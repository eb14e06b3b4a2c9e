"""The part every networked printer driver shares: the link's retries, the state, the job's events.

A small driver in this file plays the printer's side by handing over reports
the way a real driver does after parsing its API; the drivers themselves are
tested against the real servers or their simulators in their own files.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.devices.base import CommandRejected, FileUpload, declared_capabilities
from agent.devices.network import (
    AuthFailed,
    Backoff,
    JobPhase,
    NetworkPrinter,
    PrinterReport,
    job_file_name,
    job_id_in,
)
from protocol.messages import DeviceState, DeviceStatus, Event, Heater, Telemetry


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.statuses: list[DeviceStatus] = []
        self.readings: list[Telemetry] = []

    def event(self, body: Event) -> None:
        self.events.append(body)

    def status(self, status: DeviceStatus) -> None:
        self.statuses.append(status)

    def telemetry(self, telemetry: Telemetry) -> None:
        self.readings.append(telemetry)

    def types(self) -> list[str]:
        return [e.type for e in self.events]


class ScriptedPrinter(NetworkPrinter):
    """A driver whose printer is this test: sessions fail or report as the test says."""

    kind = "octoprint"

    def __init__(self, emitter: Recorder, **kw: object) -> None:
        super().__init__("p1", emitter, poll_interval_s=0.05, **kw)  # type: ignore[arg-type]
        self.sessions = 0
        self.failure: BaseException | None = None
        self.uploads: list[str] = []
        self.started: list[str] = []
        self.calls: list[str] = []
        self.first_report = PrinterReport(DeviceState.IDLE, {"T0": Heater(actual=21.0)})

    async def session(self) -> None:
        self.sessions += 1
        if self.failure is not None:
            raise self.failure
        self.heard(self.first_report)
        await asyncio.Event().wait()

    async def upload(self, path: Path, name: str) -> str:
        self.uploads.append(name)
        return name

    async def start_print(self, name: str) -> None:
        self.started.append(name)

    async def pause_print(self) -> None:
        self.calls.append("pause")

    async def resume_print(self) -> None:
        self.calls.append("resume")

    async def cancel_print(self) -> None:
        self.calls.append("cancel")

    async def stop_now(self) -> None:
        self.calls.append("stop")


async def _until(predicate, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def test_backoff_grows_to_its_cap_with_jitter_and_resets() -> None:
    top = Backoff(first_s=1.0, max_s=30.0, rng=lambda: 1.0)
    assert [top.next() for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    top.reset()
    assert top.next() == 1.0
    bottom = Backoff(first_s=1.0, max_s=30.0, rng=lambda: 0.0)
    assert [bottom.next() for _ in range(3)] == [0.5, 0.5, 0.5], "jitter reaches down to half the first delay"


def test_a_job_file_name_carries_the_job_id_and_the_format(tmp_path: Path) -> None:
    gcode = tmp_path / "a"
    gcode.write_text("G28\n")
    threemf = tmp_path / "b"
    threemf.write_bytes(b"PK\x03\x04rest")
    assert job_file_name("42", gcode) == "farmhand-job-42.gcode"
    assert job_file_name("42", threemf) == "farmhand-job-42.3mf"
    assert job_id_in("/sdcard/farmhand-job-42.gcode") == "42"
    assert job_id_in("usb/FARMHAND-JOB-42.GCODE") == "42"
    assert job_id_in("benchy.gcode") is None
    assert job_id_in(None) is None


def test_networked_drivers_declare_file_upload() -> None:
    printer = ScriptedPrinter(Recorder())
    assert isinstance(printer, FileUpload)
    assert "file_upload" in declared_capabilities(printer)


async def test_a_print_follows_the_printers_reports(tmp_path: Path) -> None:
    rec = Recorder()
    printer = ScriptedPrinter(rec)
    await printer.open()
    try:
        await _until(lambda: printer.connected)
        assert rec.statuses[-1].state is DeviceState.IDLE
        job = tmp_path / "job"
        job.write_text("G28\n")
        await printer.start_job("7", job)
        assert printer.uploads == printer.started == ["farmhand-job-7.gcode"]
        assert rec.types() == ["job_started"]

        def report(state: DeviceState, phase: JobPhase, progress: float, error: str | None = None) -> None:
            printer.heard(PrinterReport(state, job_file="farmhand-job-7.gcode", job_phase=phase, progress=progress,
                                        remaining_s=100.0, error=error))

        report(DeviceState.PRINTING, JobPhase.PRINTING, 0.25)
        assert printer.status().job_id == "7" and printer.status().progress == 0.25
        await printer.start_job("7", job)  # the same job again (a replayed command): never a second start
        assert printer.started == ["farmhand-job-7.gcode"]
        with pytest.raises(CommandRejected, match="busy"):
            await printer.start_job("8", job)
        await printer.pause()
        report(DeviceState.PAUSED, JobPhase.PAUSED, 0.3, error="filament runout")
        report(DeviceState.PAUSED, JobPhase.PAUSED, 0.3)
        await printer.resume()
        report(DeviceState.PRINTING, JobPhase.PRINTING, 0.9)
        report(DeviceState.IDLE, JobPhase.FINISHED, 1.0)
        assert printer.calls == ["pause", "resume"]
        assert rec.types() == ["job_started", "job_progress", "job_paused", "job_resumed", "job_completed"]
        assert rec.events[2].reason == "filament runout"  # type: ignore[union-attr]
        assert printer.status().job_id is None and printer.status().state is DeviceState.IDLE
    finally:
        await printer.close()


async def test_an_agent_restarted_mid_print_finds_its_job_by_the_file_name() -> None:
    rec = Recorder()
    printer = ScriptedPrinter(rec)
    printer.first_report = PrinterReport(DeviceState.PRINTING, job_file="farmhand-job-12.gcode",
                                         job_phase=JobPhase.PRINTING, progress=0.5)
    await printer.open()
    try:
        await _until(lambda: printer.connected)
        assert printer.status().job_id == "12"
        printer.heard(PrinterReport(DeviceState.IDLE, job_file="farmhand-job-12.gcode", job_phase=JobPhase.FAILED,
                                    error="Heater extruder not heating at expected rate"))
        assert rec.events[-1].type == "job_failed"
        assert rec.events[-1].reason == "Heater extruder not heating at expected rate"  # type: ignore[union-attr]
    finally:
        await printer.close()


async def test_a_print_of_someone_elses_file_is_shown_but_is_no_job_of_ours() -> None:
    rec = Recorder()
    printer = ScriptedPrinter(rec)
    printer.first_report = PrinterReport(DeviceState.PRINTING, job_file="benchy.gcode", job_phase=JobPhase.PRINTING)
    await printer.open()
    try:
        await _until(lambda: printer.connected)
        assert printer.status().state is DeviceState.PRINTING and printer.status().job_id is None
        with pytest.raises(CommandRejected):
            await printer.cancel()
    finally:
        await printer.close()


async def test_cancel_of_a_job_the_printer_no_longer_has_ends_the_job(tmp_path: Path) -> None:
    rec = Recorder()
    printer = ScriptedPrinter(rec)
    await printer.open()
    try:
        await _until(lambda: printer.connected)
        job = tmp_path / "job"
        job.write_text("G28\n")
        await printer.start_job("3", job)
        await printer.cancel()  # the last report predates the start: the printer is told
        assert printer.calls == ["cancel"]
        printer.heard(PrinterReport(DeviceState.IDLE))
        await printer.cancel()
        assert printer.calls == ["cancel"] and rec.events[-1].type == "job_failed"
        assert rec.events[-1].cancelled  # type: ignore[union-attr]
    finally:
        await printer.close()


async def test_silence_makes_the_printer_offline_and_it_reconnects() -> None:
    rec = Recorder()
    printer = ScriptedPrinter(rec, offline_after_s=0.2, backoff=Backoff(first_s=0.05, max_s=0.1))
    await printer.open()
    try:
        await _until(lambda: printer.sessions >= 2)
        states = [s.state for s in rec.statuses]
        assert DeviceState.DISCONNECTED in states, "a silent printer must show offline"
        await _until(lambda: printer.connected)
    finally:
        await printer.close()


async def test_refused_credentials_are_one_clear_error_and_no_retry_storm() -> None:
    rec = Recorder()
    printer = ScriptedPrinter(rec, backoff=Backoff(first_s=0.01, max_s=5.0))
    printer.failure = AuthFailed("HTTP 403: invalid API key")
    await printer.open()
    try:
        await _until(lambda: printer.sessions >= 1)
        await asyncio.sleep(0.3)
        assert printer.sessions == 1, "a refused login waits the longest backoff before trying again"
        status = printer.status()
        assert status.state is DeviceState.ERROR and "invalid API key" in (status.error or "")
        with pytest.raises(CommandRejected, match="invalid API key"):
            await printer.pause()
    finally:
        await printer.close()


async def test_an_unreachable_printer_is_retried_with_backoff() -> None:
    rec = Recorder()
    printer = ScriptedPrinter(rec, backoff=Backoff(first_s=0.02, max_s=0.08))
    printer.failure = ConnectionRefusedError(111, "Connection refused")
    await printer.open()
    try:
        await _until(lambda: printer.sessions >= 4)
        assert printer.status().state is DeviceState.DISCONNECTED
        printer.failure = None
        await _until(lambda: printer.connected)
        assert printer.status().state is DeviceState.IDLE
    finally:
        await printer.close()


async def test_a_job_cancelled_while_it_uploads_is_never_started(tmp_path: Path) -> None:
    rec = Recorder()
    printer = ScriptedPrinter(rec)
    uploaded = asyncio.Event()
    plain_upload = printer.upload

    async def slow_upload(path: Path, name: str) -> str:
        await uploaded.wait()
        return await plain_upload(path, name)

    printer.upload = slow_upload  # type: ignore[method-assign]
    await printer.open()
    try:
        await _until(lambda: printer.connected)
        job = tmp_path / "job"
        job.write_text("G28\n")
        starting = asyncio.create_task(printer.start_job("4", job))
        await asyncio.sleep(0.05)
        await printer.cancel()  # the printer still reports idle: nothing of ours runs there yet
        uploaded.set()
        with pytest.raises(CommandRejected, match="cancelled"):
            await starting
        assert printer.started == [], "the printer must not start a cancelled job"
        assert rec.types() == ["job_failed"] and rec.events[0].cancelled  # type: ignore[union-attr]
        assert printer.status().job_id is None
    finally:
        await printer.close()
