"""Bambu Lab printers in LAN mode: MQTT over TLS for state and commands, implicit FTPS for files.

The printer runs its own MQTT broker (port 8883, user ``bblp``, the access code
as password) behind a certificate whose common name is its serial number. We
pin that certificate (``ca_file``: the printer's own certificate, or the CA
that issued it) and check the name against the configured serial, though we
dial the printer by its address; a wrong certificate is refused, never waved
through. P1 and A1 firmware serves one local client well, so the driver holds
one connection and the base reconnects it politely with backoff.

On every connect we ask for the whole state (``pushing.pushall``) and the
firmware version; P1/A1 deltas are merged onto that snapshot
(``bambu_report``). A quiet P1 sends nothing when nothing changes, so a quiet
link is probed with the cheap ``get_version`` before it is taken for lost.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import gmqtt
from gmqtt.mqtt.constants import MQTTv311
from gmqtt.mqtt.handler import MQTTConnectError

from protocol.gmqtt_client import SessionClient
from protocol.messages import ConsoleOutput, DeviceState

from . import bambu_ftps
from .base import CommandRejected, Emitter
from .bambu_report import PrintSnapshot
from .network import AuthFailed, JobPhase, LinkLost, NetworkPrinter, digest_of, job_id_in

if TYPE_CHECKING:
    from agent.config import DeviceConfig

MQTT_PORT = 8883
FTPS_PORT = 990
CONNECT_TIMEOUT_S = 10.0
REPLY_TIMEOUT_S = 5.0
START_CONFIRM_S = 20.0
_REFUSED_LOGIN = (4, 5, 134, 135)


@dataclass(frozen=True)
class BambuAddress:
    """Where the printer listens: ``mqtts://192.168.1.40`` (8883), ``…:8883?ftps_port=990`` for other ports."""

    host: str
    mqtt_port: int = MQTT_PORT
    ftps_port: int = FTPS_PORT

    @classmethod
    def parse(cls, url: str) -> BambuAddress:
        parts = urlsplit(url if "://" in url else f"mqtts://{url}")
        if parts.scheme not in ("mqtts", "bambu"):
            raise ValueError(f"a Bambu printer's url is mqtts://HOST[:PORT], got {url!r}")
        if not parts.hostname:
            raise ValueError(f"a Bambu printer's url needs a host: {url!r}")
        query = parse_qs(parts.query)
        ftps = query.get("ftps_port", [str(FTPS_PORT)])[0]
        if not ftps.isdigit():
            raise ValueError(f"ftps_port must be a port number, got {ftps!r}")
        return cls(parts.hostname, parts.port or MQTT_PORT, int(ftps))


class _PinnedContext(ssl.SSLContext):
    """Verifies the printer's certificate against the pinned one and its name against the serial.

    The printer is dialled by address but its certificate names its serial, so
    every connection made with this context checks that name instead.
    """

    serial: str

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server_side: bool = False,
                 server_hostname: str | None = None, session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side, self.serial, session)

    def wrap_socket(self, sock: Any, server_side: bool = False, do_handshake_on_connect: bool = True,
                    suppress_ragged_eofs: bool = True, server_hostname: str | None = None,
                    session: ssl.SSLSession | None = None) -> ssl.SSLSocket:
        return super().wrap_socket(sock, server_side, do_handshake_on_connect, suppress_ragged_eofs,
                                   self.serial, session)


def pinned_context(ca_file: Path, serial: str) -> ssl.SSLContext:
    """Trust only ``ca_file`` (a printer's own certificate counts as its anchor) for a certificate naming ``serial``."""
    context = _PinnedContext(ssl.PROTOCOL_TLS_CLIENT)
    context.serial = serial
    try:
        context.load_verify_locations(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise AuthFailed(f"cannot read the printer's certificate from {ca_file}: {exc}") from None
    # A pinned leaf is an anchor of its own, whoever issued it.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
    return context


class BambuPrinter(NetworkPrinter):
    kind = "bambu"

    def __init__(self, device_id: str, emitter: Emitter, *, address: BambuAddress, serial: str, access_code: str,
                 ca_file: Path, model: str | None = None, poll_interval_s: float = 2.0,
                 offline_after_s: float | None = None) -> None:
        super().__init__(device_id, emitter, model=model, poll_interval_s=poll_interval_s,
                         offline_after_s=offline_after_s)
        self.address = address
        self.serial = serial
        self._access_code = access_code
        self.ca_file = ca_file
        self.report_topic = f"device/{serial}/report"
        self.request_topic = f"device/{serial}/request"
        self.malformed = 0
        """Reports that were not JSON objects (logged and skipped)."""
        self._snapshot = PrintSnapshot()
        self._client: SessionClient | None = None
        self._sequence = itertools.count(1)
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._console: list[str] | None = None
        self._last_message = 0.0
        self._plates: dict[str, tuple[str, str]] = {}

    # ---------------------------------------------------------------- the link

    async def session(self) -> None:
        context = pinned_context(self.ca_file, self.serial)
        lost = asyncio.Event()
        # Reports its lost connection instead of reconnecting itself: the base reconnects, politely.
        client = SessionClient(f"farmhand-{uuid.uuid4().hex[:12]}", clean_session=True, lost=lost, receive=None)
        client.on_message = self._on_message
        client.on_disconnect = lambda *_: lost.set()
        client.set_auth_credentials("bblp", self._access_code)
        self._snapshot = PrintSnapshot()
        try:
            await asyncio.wait_for(client.connect(self.address.host, self.address.mqtt_port, ssl=context,
                                                  keepalive=max(5, int(self.offline_after_s)), version=MQTTv311),
                                   CONNECT_TIMEOUT_S)
        except MQTTConnectError as exc:
            if getattr(exc, "_code", None) in _REFUSED_LOGIN:
                raise AuthFailed("the printer refused the access code") from None
            raise LinkLost(f"the printer's MQTT refused the connection: {exc}") from None
        except ssl.SSLCertVerificationError as exc:
            raise AuthFailed(f"the printer's certificate is not the one pinned in {self.ca_file} "
                             f"for serial {self.serial}: {exc.verify_message}") from None
        except TimeoutError:
            raise LinkLost(f"no MQTT answer from {self.address.host}:{self.address.mqtt_port} "
                           f"in {CONNECT_TIMEOUT_S:.0f} s") from None
        self._client = client
        client.subscribe(self.report_topic, qos=0)
        # Subscriptions are handled in order: the answers to these arrive after it is active.
        self._publish("pushing", "pushall", version=1, push_target=1)
        self._publish("info", "get_version")
        self._last_message = asked = time.monotonic()
        probe_after = self.offline_after_s / 2
        while not lost.is_set():
            try:
                await asyncio.wait_for(lost.wait(), timeout=probe_after / 2)
            except TimeoutError:
                now = time.monotonic()
                if not self._snapshot.complete and now - asked > probe_after:
                    # The whole state never came (asked before the printer listened): ask again, politely.
                    asked = now
                    self._publish("pushing", "pushall", version=1, push_target=1)
                elif now - self._last_message > probe_after:
                    self._publish("info", "get_version")
        raise LinkLost("the printer closed the MQTT connection")

    async def disconnect(self) -> None:
        client, self._client = self._client, None
        for future in self._replies.values():
            if not future.done():
                future.set_exception(CommandRejected(f"device {self.id}: the printer's link went down"))
        self._replies.clear()
        if client is not None:
            try:
                await asyncio.wait_for(client.disconnect(), 2.0)
            except (TimeoutError, OSError, ConnectionError):
                pass

    def _on_message(self, _client: gmqtt.Client, topic: str, payload: bytes, _qos: int, _props: Any) -> int:
        self._last_message = time.monotonic()
        try:
            message = json.loads(payload)
            if not isinstance(message, dict):
                raise ValueError("not a JSON object")
            self._read(message)
        except Exception as exc:  # a report we cannot read must never end the link
            self.malformed += 1
            self.log.warning("malformed report", topic=topic, error=f"{type(exc).__name__}: {exc}",
                             count=self.malformed, payload=payload[:200].decode("utf-8", "replace"))
        return 0

    def _read(self, message: dict[str, Any]) -> None:
        heard = False
        for kind, body in message.items():
            if not isinstance(body, dict):
                continue
            command = body.get("command")
            if kind == "print" and command == "push_status":
                self._snapshot.absorb(body)
                heard = True
            elif kind == "info" and command == "get_version":
                heard = self._snapshot.read_version(body) or heard
            elif kind == "mc_print" and command == "push_info" and self._console is not None:
                self._console.extend(str(body.get("param", "")).strip().splitlines())
            reply = self._replies.get(str(body.get("sequence_id"))) if "result" in body else None
            if reply is not None and not reply.done() and body.get("command") not in (None, "push_status"):
                reply.set_result(body)
        if heard and self._snapshot.complete:
            self.heard(self._snapshot.report())
        else:
            self.alive()

    def _publish(self, kind: str, command: str, **fields: Any) -> str:
        client = self._client
        if client is None:
            raise CommandRejected(f"device {self.id} is not connected")
        sequence = str(next(self._sequence))
        client.publish(self.request_topic, json.dumps({kind: {"sequence_id": sequence, "command": command,
                                                               **fields}}), qos=1)
        return sequence

    async def _command(self, command: str, **fields: Any) -> dict[str, Any] | None:
        """A ``print`` command; waits for the printer's answer and raises on a refusal in its words."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        sequence = self._publish("print", command, **fields)
        self._replies[sequence] = future
        try:
            reply = await asyncio.wait_for(future, REPLY_TIMEOUT_S)
        except TimeoutError:
            # Some firmware answers only in the next report; the base follows those.
            self.log.warning("no answer to a command", command=command, sequence_id=sequence)
            return None
        finally:
            self._replies.pop(sequence, None)
        if str(reply.get("result", "")).lower() != "success":
            reason = reply.get("reason") or reply.get("result") or "no reason given"
            raise CommandRejected(f"device {self.id}: the printer refused {command}: {reason}")
        return reply

    # ---------------------------------------------------------------- files and jobs

    async def upload(self, path: Path, name: str) -> str:
        context = pinned_context(self.ca_file, self.serial)
        loop = asyncio.get_running_loop()
        reported = [0]

        def progress(sent: int, total: int) -> None:  # in the upload's thread: one line per tenth
            tenth = sent * 10 // max(total, 1)
            if tenth > reported[0]:
                reported[0] = tenth
                loop.call_soon_threadsafe(lambda: self.log.info("uploading", file=name, sent=sent, total=total))

        if name.lower().endswith(".3mf"):
            self._plates[name] = await asyncio.to_thread(_first_plate, path)
        size = await asyncio.to_thread(
            bambu_ftps.upload, host=self.address.host, port=self.address.ftps_port, context=context,
            server_name=self.serial, access_code=self._access_code, path=path, name=name, progress=progress)
        self.log.info("uploaded", file=name, bytes=size)
        return name

    async def start_print(self, name: str) -> None:
        """Start the file and wait until the printer says it took it: it checks the file after answering."""
        before = self._job_view()
        await self._send_start(name)
        deadline = time.monotonic() + START_CONFIRM_S
        while time.monotonic() < deadline:
            report = self.report
            if self.connected and report is not None and self._job_view() != before \
                    and job_id_in(report.job_file) == job_id_in(name):
                if report.job_phase in (JobPhase.FAILED, JobPhase.CANCELLED):
                    raise CommandRejected(f"device {self.id}: the printer did not start {name}: {report.error}")
                if report.job_phase is not None:
                    return
            await asyncio.sleep(0.05)
        self.log.warning("the printer has not reported the print yet", file=name, waited_s=START_CONFIRM_S)

    def _job_view(self) -> tuple[object, ...]:
        report = self.report
        return (report.job_file, report.job_phase, report.error, report.state) if report else ()

    async def _send_start(self, name: str) -> None:
        if name.lower().endswith(".3mf"):
            plate, md5 = self._plates.pop(name, ("Metadata/plate_1.gcode", ""))
            await self._command(
                "project_file", param=plate, url=f"file:///sdcard/{name}", md5=md5,
                project_id="0", profile_id="0", task_id="0", subtask_id="0",
                subtask_name=name.rsplit(".", 1)[0], file="", bed_type="auto", timelapse=False,
                bed_levelling=True, flow_cali=False, vibration_cali=False, layer_inspect=False,
                use_ams=self._has_ams(), ams_mapping="")
        else:
            await self._command("gcode_file", param=f"/sdcard/{name}")

    def _has_ams(self) -> bool:
        """Print from the AMS when it holds filament, in the slicer's own mapping (an empty ``ams_mapping``)."""
        report = self.report
        return report is not None and any(m.slot.startswith("ams") for m in report.materials)

    async def pause_print(self) -> None:
        await self._command("pause", param="")

    async def resume_print(self) -> None:
        await self._command("resume", param="")

    async def cancel_print(self) -> None:
        await self._command("stop", param="")

    async def stop_now(self) -> None:
        """``stop`` is LAN mode's own way to halt: the print ends at once and the heaters go off."""
        await self._command("stop", param="")

    # ---------------------------------------------------------------- console

    async def send_gcode(self, command_id: str, lines: list[str]) -> None:
        """``print.gcode_line``: the firmware's log lines (``mc_print.push_info``) come back as console output."""
        report = self._ready("run console commands")
        if report.state not in (DeviceState.IDLE, DeviceState.PAUSED):
            raise CommandRejected(f"device {self.id} cannot run console commands: it is {report.state.value}")
        commands = [code for line in lines if (code := line.split(";", 1)[0].strip())]
        if not commands:
            raise CommandRejected("no command to send: every line is empty or a comment")
        self._console = []
        try:
            reply = await self._command("gcode_line", param="\n".join(commands) + "\n")
            output = self._console + (["ok"] if reply is not None else [])
        except CommandRejected as exc:
            output = [*self._console, str(exc)]
            raise
        finally:
            self._console = None
            self.emitter.event(ConsoleOutput(device=self.id, command_id=command_id, lines=output[-500:]))


def _first_plate(path: Path) -> tuple[str, str]:
    """The first plate's G-code inside a 3MF and its MD5, which ``project_file`` checks."""
    try:
        with zipfile.ZipFile(path) as archive:
            plates = sorted(n for n in archive.namelist() if n.startswith("Metadata/plate_") and n.endswith(".gcode"))
            if not plates:
                raise CommandRejected("the 3MF holds no sliced plate (Metadata/plate_N.gcode): slice it for Bambu")
            with archive.open(plates[0]) as plate:  # read a piece at a time: a plate's G-code may be 100 MB
                return plates[0], digest_of(plate, "md5")  # the printer's own check
    except zipfile.BadZipFile as exc:
        raise CommandRejected(f"the 3MF cannot be read: {exc}") from None


def create(config: DeviceConfig, emitter: Emitter, poll_interval_s: float) -> BambuPrinter:
    assert config.url and config.serial and config.access_code and config.ca_file, \
        "DeviceConfig requires url, serial, access_code and ca_file for bambu"
    return BambuPrinter(config.id, emitter, address=BambuAddress.parse(config.url), serial=config.serial,
                        access_code=config.access_code.get_secret_value(), ca_file=config.ca_file,
                        model=config.model, poll_interval_s=poll_interval_s, offline_after_s=config.offline_after_s)
