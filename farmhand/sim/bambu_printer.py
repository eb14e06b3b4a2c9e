"""A simulated Bambu Lab printer in LAN mode: the MQTT client inside the printer, following the public shapes.

What a real P1/X1 does, as documented by the community (OpenBambuAPI) and
seen by Bambu Studio:

- it reads commands on ``device/{serial}/request`` and writes everything on
  ``device/{serial}/report`` — answers to commands (the command's fields, its
  ``sequence_id``, ``result``) and ``print.push_status`` reports;
- an X1 reports the whole ``print`` object each time; a P1/A1 (``full_reports``
  False) sends only what changed since its last report, nothing when nothing
  did, and the whole object when asked with ``pushing.pushall``;
- ``gcode_state`` is one of IDLE, PREPARE, RUNNING, PAUSE, FINISH, FAILED; a
  stopped print ends FAILED with ``print_error`` 0x0300400C ("The task was
  canceled."); FINISH and FAILED stay until the next print;
- ``print.gcode_line`` logs each line back as ``mc_print.push_info``.

Cheap to run many of: one asyncio task and one MQTT client per printer.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import math
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import structlog

from protocol.mqtt import MqttSession, NotConnected

log = structlog.get_logger("farmhand.sim.bambu")

CANCELLED = 0x0300400C
FILE_NOT_AVAILABLE = 0x0300800E
CANNOT_PARSE = 0x05004003
EXTERNAL_SPOOL_RAN_OUT = 0x03008015
_SD_PREFIXES = ("file:///sdcard/", "ftp:///sdcard/", "ftp:///", "/sdcard/", "sdcard/")


def _tray(tray_id: int, kind: str = "", color: str = "00000000", remain: int = -1) -> dict[str, Any]:
    if not kind:
        return {"id": str(tray_id)}
    return {"id": str(tray_id), "tray_type": kind, "tray_color": color, "cols": [color], "remain": remain,
            "tray_sub_brands": f"{kind} Basic", "tray_info_idx": "GFA00", "nozzle_temp_min": "190",
            "nozzle_temp_max": "230", "tray_diameter": "1.75", "tag_uid": "0000000000000000"}


DEFAULT_AMS = [_tray(0, "PLA", "FFFFFFFF", 80), _tray(1, "PLA", "000000FF", 45), _tray(2, "PETG", "F95959FF", 100),
               _tray(3)]


class SimulatedBambuPrinter:
    """One printer: its SD card is a folder, its state the ``print`` object a P1/X1 reports."""

    def __init__(self, serial: str, broker_url: str, sdcard: Path, *, full_reports: bool = False,
                 report_interval_s: float = 1.0, print_s: float = 20.0, prepare_s: float = 0.5,
                 firmware: str = "01.07.00.00", ams: list[dict[str, Any]] | None = None) -> None:
        self.serial = serial
        self.sdcard = sdcard
        self.full_reports = full_reports
        self.report_interval_s = report_interval_s
        self.print_s = print_s
        self.prepare_s = prepare_s
        self.firmware = firmware
        self.requests: list[dict[str, Any]] = []
        """Every request received, in order (tests count the starts)."""
        self.malformed = 0
        self.start_error: int | None = None
        """A fault a test can cause: the next print fails its file check with this ``print_error``."""
        self.status: dict[str, Any] = self._initial(ams if ams is not None else copy.deepcopy(DEFAULT_AMS))
        self._sent: dict[str, Any] = {}
        self._push_seq = 0
        self._elapsed = 0.0
        self._phase_started = 0.0
        self._task: asyncio.Task[None] | None = None
        self.report_topic = f"device/{serial}/report"
        self.session = MqttSession(broker_url, f"sim-bambu-{serial}-{uuid.uuid4().hex[:6]}", persistent=False,
                                   on_message=self._on_request, subscriptions=[(f"device/{serial}/request", 1)],
                                   backoff_initial=0.2, backoff_max=1.0)

    def _initial(self, ams: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "command": "push_status", "msg": 0, "gcode_state": "IDLE", "gcode_file": "", "subtask_name": "",
            "print_type": "idle", "mc_percent": 0, "mc_remaining_time": 0, "mc_print_stage": "1", "layer_num": 0,
            "total_layer_num": 0, "print_error": 0, "hms": [], "nozzle_temper": 25.0, "nozzle_target_temper": 0.0,
            "bed_temper": 25.0, "bed_target_temper": 0.0, "chamber_temper": 25.0, "nozzle_diameter": "0.4",
            "spd_lvl": 2, "spd_mag": 100, "wifi_signal": "-45dBm", "sdcard": True, "home_flag": 0,
            "lights_report": [{"node": "chamber_light", "mode": "on"}],
            "ams": {"ams": [{"id": "0", "humidity": "4", "temp": "24.0", "tray": ams}] if ams else [],
                    "ams_exist_bits": "1" if ams else "0", "tray_now": "255", "version": 4},
            "vt_tray": {"id": "254", "tray_type": "", "tray_color": "00000000", "remain": 0},  # no external spool
        }

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self.session.start()
        self._task = asyncio.create_task(self._tick(), name=f"sim-bambu:{self.serial}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.session.stop()

    # ---------------------------------------------------------------- faults a test can cause

    def run_out(self) -> None:
        """The external spool ran out: the printer pauses and says why."""
        if self.status["gcode_state"] == "RUNNING":
            self.status.update(gcode_state="PAUSE", print_error=EXTERNAL_SPOOL_RAN_OUT)

    def fail(self, code: int) -> None:
        """The printer gives up on the print with ``code`` (e.g. 0x03004006, the nozzle is clogged)."""
        if self.status["gcode_state"] in ("PREPARE", "RUNNING", "PAUSE"):
            self._end("FAILED", code)

    def raise_hms(self, attr: int, code: int) -> None:
        self.status["hms"] = [*self.status["hms"], {"attr": attr, "code": code}]

    def clear_hms(self) -> None:
        self.status["hms"] = []

    def starts(self) -> list[str]:
        """The files this printer was asked to print, in order."""
        return [b.get("url") or b.get("param", "") for r in self.requests for k, b in r.items()
                if k == "print" and isinstance(b, dict) and b.get("command") in ("project_file", "gcode_file")]

    # ---------------------------------------------------------------- requests

    async def _on_request(self, topic: str, payload: bytes, qos: int) -> None:
        try:
            message = json.loads(payload)
            if not isinstance(message, dict):
                raise ValueError("not an object")
        except ValueError:
            self.malformed += 1
            return
        self.requests.append(message)
        for kind, body in message.items():
            if not isinstance(body, dict):
                continue
            command, sequence = body.get("command"), str(body.get("sequence_id", "0"))
            if kind == "pushing" and command == "pushall":
                self._report(full=True)
            elif kind == "info" and command == "get_version":
                self._publish({"info": {"command": "get_version", "sequence_id": sequence, "module": [
                    {"name": "ota", "sw_ver": self.firmware, "hw_ver": "", "sn": ""},
                    {"name": "mc", "sw_ver": "00.00.10.48", "hw_ver": "MC07", "sn": self.serial}],
                    "result": "success", "reason": ""}})
            elif kind == "print" and isinstance(command, str):
                reason = self._print_command(command, body)
                self._publish({"print": {**body, "result": "fail" if reason else "success", "reason": reason or ""}})
                self._report(full=self.full_reports)

    def _print_command(self, command: str, body: dict[str, Any]) -> str | None:
        """Do it; None when done, else the reason it was refused."""
        state = self.status["gcode_state"]
        match command:
            case "project_file" | "gcode_file":
                if state in ("PREPARE", "RUNNING", "PAUSE"):
                    return "Device is busy and cannot start new task."
                self._begin(command, body)
            case "pause":
                if state not in ("PREPARE", "RUNNING"):
                    return f"cannot pause while {state}"
                self.status["gcode_state"] = "PAUSE"
            case "resume":
                if state != "PAUSE":
                    return f"cannot resume while {state}"
                self.status.update(gcode_state="RUNNING", print_error=0)
            case "stop":
                if state in ("PREPARE", "RUNNING", "PAUSE"):
                    self._end("FAILED", CANCELLED)
            case "gcode_line":
                for n, line in enumerate(str(body.get("param", "")).splitlines(), 1):
                    self._publish({"mc_print": {"command": "push_info", "sequence_id": str(n),
                                                "param": f"[LINK] GcodeLine ({n}) l={len(line)} from 0600 ok: {line}"}})
            case _:
                return f"unsupported command {command}"
        return None

    def _begin(self, command: str, body: dict[str, Any]) -> None:
        where = str(body.get("url") or body.get("param") or "") if command == "project_file" \
            else str(body.get("param", ""))
        name = next((where[len(p):] for p in _SD_PREFIXES if where.startswith(p)), where.lstrip("/"))
        path = self.sdcard / name
        self.status.update(gcode_file=name, subtask_name=name.rsplit(".", 1)[0] if command == "project_file" else "",
                           print_type="local", mc_percent=0, print_error=0, layer_num=0, total_layer_num=50,
                           mc_remaining_time=math.ceil(self.print_s / 60))
        self._elapsed = 0.0
        error, self.start_error = self.start_error or self._check_file(path, command, body), None
        if error:
            self._end("FAILED", error)
            return
        self.status.update(gcode_state="PREPARE", nozzle_target_temper=220.0, bed_target_temper=55.0)
        self._phase_started = time.monotonic()

    def _check_file(self, path: Path, command: str, body: dict[str, Any]) -> int | None:
        if not path.is_file():
            return FILE_NOT_AVAILABLE
        if command != "project_file":
            return None
        try:
            with zipfile.ZipFile(path) as archive:
                plate = archive.read(str(body.get("param", "")))
        except (zipfile.BadZipFile, KeyError):
            return CANNOT_PARSE
        md5 = body.get("md5")
        return CANNOT_PARSE if md5 and hashlib.md5(plate).hexdigest() != str(md5).lower() else None  # noqa: S324

    def _end(self, state: str, error: int = 0) -> None:
        self.status.update(gcode_state=state, print_error=error, nozzle_target_temper=0.0, bed_target_temper=0.0,
                           mc_remaining_time=0)
        if state == "FINISH":
            self.status["mc_percent"] = 100

    # ---------------------------------------------------------------- time and reports

    async def _tick(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.report_interval_s)
            now = time.monotonic()
            self._advance(now - last, now)
            last = now
            self._report(full=self.full_reports)

    def _advance(self, dt: float, now: float) -> None:
        s = self.status
        if s["gcode_state"] == "PREPARE" and now - self._phase_started >= self.prepare_s:
            s["gcode_state"] = "RUNNING"
        if s["gcode_state"] == "RUNNING":
            self._elapsed = min(self.print_s, self._elapsed + dt)
            s["mc_percent"] = int(100 * self._elapsed / self.print_s)
            s["mc_remaining_time"] = math.ceil((self.print_s - self._elapsed) / 60)
            s["layer_num"] = int(s["total_layer_num"] * self._elapsed / self.print_s)
            if self._elapsed >= self.print_s:
                self._end("FINISH")
        for actual, target in (("nozzle_temper", "nozzle_target_temper"), ("bed_temper", "bed_target_temper")):
            goal = s[target] or 25.0
            s[actual] = goal if abs(goal - s[actual]) < 0.5 else round(s[actual] + (goal - s[actual]) * 0.5, 1)

    def _report(self, *, full: bool) -> None:
        if full:
            body = copy.deepcopy(self.status)
        else:
            body = {k: copy.deepcopy(v) for k, v in self.status.items() if self._sent.get(k) != v}
            if not body:
                return  # a P1 with nothing new says nothing
            body["command"] = "push_status"
            body["msg"] = 1
        self._push_seq += 1
        body["sequence_id"] = str(self._push_seq)
        if self._publish({"print": body}):
            self._sent = copy.deepcopy(self.status)

    def _publish(self, message: dict[str, Any]) -> bool:
        try:
            self.session.publish(self.report_topic, json.dumps(message).encode(), qos=0)
            return True
        except NotConnected:
            return False  # the printer prints on while its network is down
