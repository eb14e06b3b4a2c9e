"""Klipper printers through Moonraker: JSON-RPC 2.0 on ``/websocket``, job files by HTTP upload.

A session opens the websocket (``X-Api-Key`` when a key is configured),
identifies itself (``server.connection.identify``, the key again, so a refused
key is one clear ``AuthFailed``), asks ``server.info`` whether Klippy is there
and subscribes to what changes seldom and matters at once (job state, file,
Klippy's state, heater targets: ``printer.objects.subscribe``, only objects
its config has); the readings that change with every Klippy report
(temperatures, progress, durations) are read with ``printer.objects.query``
once per poll interval, so a printing printer costs the agent about one
message a second instead of four. A full read on connecting makes the
snapshot; ``notify_status_update`` deltas are merged onto it
(``moonraker_state``). ``notify_klippy_ready``
subscribes again (Moonraker forgets subscriptions when Klippy goes),
``notify_klippy_shutdown`` re-reads the state, ``notify_klippy_disconnected``
clears it. Moonraker's ``notify_proc_stat_update`` every second keeps a quiet
link from looking dead.

A job file is uploaded to ``/server/files/upload`` with its sha256 as
``checksum`` (Moonraker refuses a file that arrives different) and without
``print=true``; the print is then started by ``printer.print.start``. Two steps
on purpose: with ``print=true`` a busy printer, or one whose Moonraker has a
``[job_queue]``, would queue the file and start it later on its own — a
second start path we could not see — and Klipper's reason for refusing a
start would be lost. ``printer.print.pause|resume|cancel``,
``printer.emergency_stop`` and ``printer.firmware_restart`` are Moonraker's
own; the console is ``printer.gcode.script`` with the ``notify_gcode_response``
lines that arrive meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.net import HttpClient, Multipart, RequestFailed, Timeout, WebSocket, WebSocketRejected
from protocol.messages import ConsoleOutput, DeviceState

from .base import CommandRejected, Emitter
from .moonraker_rpc import MoonrakerSocket, RpcError
from .moonraker_state import Interest, KlipperStatus
from .network import AuthFailed, NetworkPrinter, sha256_of

if TYPE_CHECKING:
    from agent.config import DeviceConfig

CONNECT_TIMEOUT_S = 10.0
CONSOLE_TIMEOUT_S = 120.0
CONSOLE_SETTLE_S = 0.1
"""Moonraker may pass on a command's last response lines just after its answer."""
UPLOAD_STALL_S = 60.0
"""An upload (and Moonraker reading the file's metadata after it) may take long, but not stall this long."""
NEW_JOB_FILE = "new job file"
_AUTH_CODES = (401, 403)
_RPC_AUTH_CODES = (*_AUTH_CODES, -32602)
"""Moonraker answers a refused login over JSON-RPC with -32602 (it maps HTTP 401 onto it)."""
_CONSOLE_STATES = (DeviceState.IDLE, DeviceState.PAUSED, DeviceState.ERROR)


class MoonrakerPrinter(NetworkPrinter):
    """A Klipper printer behind Moonraker at ``url``."""

    kind = "moonraker"

    def __init__(self, device_id: str, emitter: Emitter, *, url: str, api_key: str | None = None,
                 ca_file: Path | None = None, **kw: Any) -> None:
        """``ca_file``: the certificate an https Moonraker (nginx in front, say) is checked against."""
        super().__init__(device_id, emitter, **kw)
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.ca_file = ca_file
        self.klipper = KlipperStatus()
        self._http: HttpClient | None = None
        self._socket: MoonrakerSocket | None = None
        self._resync: asyncio.Queue[str] = asyncio.Queue()
        self._interest = Interest({}, {})
        self._console: list[str] | None = None
        self._console_lock = asyncio.Lock()

    # ---------------------------------------------------------------- the link

    def _headers(self) -> dict[str, str]:
        return {"X-Api-Key": self.api_key} if self.api_key else {}

    async def session(self) -> None:
        tls = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None
        self._http = HttpClient(self.url, headers=self._headers(), tls=tls,
                                timeout=Timeout(total=None, connect=CONNECT_TIMEOUT_S, read=UPLOAD_STALL_S))
        try:
            ws = await WebSocket.connect(f"{self.url}/websocket", headers=self._headers(), tls=tls,
                                         timeout=CONNECT_TIMEOUT_S, heartbeat=max(5.0, self.offline_after_s / 2))
        except WebSocketRejected as exc:
            if exc.status in _AUTH_CODES:
                words = _error_text(exc.body) if exc.body else "the WebSocket refused"
                raise AuthFailed(f"Moonraker answered {exc.status}: {words}") from None
            raise
        self._resync = asyncio.Queue()
        self._resync.put_nowait("connect")
        socket = self._socket = MoonrakerSocket(ws, self._notified, self.alive)
        reader = asyncio.create_task(socket.run(), name=f"moonraker-read:{self.id}")
        try:
            await self._identify(socket)
            loop = asyncio.get_running_loop()
            next_poll = loop.time() + self.poll_interval_s
            while True:
                waiter = asyncio.create_task(self._resync.get())
                done, _ = await asyncio.wait({reader, waiter}, timeout=max(0.0, next_poll - loop.time()),
                                             return_when=asyncio.FIRST_COMPLETED)
                if waiter not in done:
                    waiter.cancel()
                if reader in done:
                    reader.result()  # raises why the link ended
                if waiter in done:
                    await self._sync(socket, waiter.result())
                if loop.time() >= next_poll:
                    next_poll = loop.time() + self.poll_interval_s
                    await self._poll(socket)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _identify(self, socket: MoonrakerSocket) -> None:
        params: dict[str, Any] = {"client_name": "farmhand", "version": "1", "type": "other",
                                  "url": "https://github.com/farmhand"}
        if self.api_key:
            params["api_key"] = self.api_key
        try:
            await socket.call("server.connection.identify", params)
        except RpcError as exc:
            if exc.code in _RPC_AUTH_CODES:
                raise AuthFailed(f"Moonraker refused the login: {exc.message}") from None
            raise

    async def _sync(self, socket: MoonrakerSocket, why: str) -> None:
        """Read the whole state afresh: on connecting, after Klippy became ready, after it shut down."""
        if why == NEW_JOB_FILE:
            await self._slicer_estimate(socket)
            return
        info = await socket.call("server.info")
        self.klipper.klippy_state = str(info.get("klippy_state", "disconnected"))
        if not info.get("klippy_connected", self.klipper.klippy_state != "disconnected"):
            self.klipper.klippy_gone()
        elif self.klipper.klippy_state != "startup":
            try:
                listed = await socket.call("printer.objects.list")
                self._interest = Interest.of(list(listed.get("objects", [])))
                await socket.call("printer.objects.subscribe", {"objects": self._interest.subscribed})
                answer = await socket.call("printer.objects.query", {"objects": self._interest.all()})
                printer = await socket.call("printer.info")
            except RpcError as exc:  # Klippy went away between the two calls; its ready notice will follow
                self.log.info("Klippy not ready for a subscription", reason=exc.message)
            else:
                self.klipper.objects.clear()
                self.klipper.replace(answer.get("status", {}))
                version = printer.get("software_version")
                self.klipper.firmware = f"Klipper {version}" if version else "Klipper"
                await self._slicer_estimate(socket)
        self.log.info("moonraker state read", why=why, klippy=self.klipper.klippy_state)
        self.heard(self.klipper.report())

    async def _poll(self, socket: MoonrakerSocket) -> None:
        """The readings that change all the time (temperatures, progress), once per poll interval."""
        if not self._interest.polled or self.klipper.klippy_state in ("disconnected", "startup"):
            return
        try:
            answer = await socket.call("printer.objects.query", {"objects": self._interest.polled})
        except RpcError as exc:  # Klippy left between two notices; its ready notice will follow
            self.log.debug("poll refused", reason=exc.message)
            return
        self.klipper.merge(answer.get("status", {}))
        self.heard(self.klipper.report())

    async def _slicer_estimate(self, socket: MoonrakerSocket) -> None:
        name = self.klipper.job_file
        if name is None or name in self.klipper.estimated_time:
            return
        try:
            metadata = await socket.call("server.files.metadata", {"filename": name})
        except RpcError:
            return
        estimate = metadata.get("estimated_time") if isinstance(metadata, dict) else None
        if isinstance(estimate, int | float) and estimate > 0:
            self.klipper.estimated_time[name] = float(estimate)

    def _notified(self, method: str, params: list[Any]) -> None:
        match method:
            case "notify_status_update" if params and isinstance(params[0], dict):
                before = self.klipper.job_file
                self.klipper.merge(params[0])
                if self.klipper.job_file != before and self.klipper.job_file is not None:
                    self._resync.put_nowait(NEW_JOB_FILE)  # fetches the slicer's estimate for it
                self.heard(self.klipper.report())
            case "notify_klippy_ready":
                self._resync.put_nowait("klippy ready")
            case "notify_klippy_shutdown":
                self._resync.put_nowait("klippy shutdown")
            case "notify_klippy_disconnected":
                self.klipper.klippy_gone()
                self.heard(self.klipper.report())
            case "notify_gcode_response" if params:
                if self._console is not None:
                    self._console.append(str(params[0]))
            case _:
                pass

    async def disconnect(self) -> None:
        socket, self._socket = self._socket, None
        http, self._http = self._http, None
        if socket is not None:
            await socket.close()
        if http is not None:
            await http.close()

    # ---------------------------------------------------------------- commands

    def _live(self, what: str) -> MoonrakerSocket:
        if self._socket is None:
            raise CommandRejected(f"device {self.id} cannot {what}: Moonraker is not connected")
        return self._socket

    async def _command(self, what: str, method: str, params: dict[str, Any] | None = None,
                       timeout: float = 30.0) -> Any:
        try:
            return await self._live(what).call(method, params, timeout=timeout)
        except RpcError as exc:
            raise CommandRejected(f"device {self.id} cannot {what}: {exc.message}") from None
        except ConnectionError as exc:
            raise CommandRejected(f"device {self.id} cannot {what}: {exc}") from None

    async def upload(self, path: Path, name: str) -> str:
        if self._http is None:
            raise CommandRejected(f"device {self.id} cannot upload: Moonraker is not connected")
        size = path.stat().st_size
        digest = await asyncio.to_thread(sha256_of, path)
        form = (Multipart().field("root", "gcodes").field("checksum", digest)
                .file("file", path, filename=name, log=self.log.bind(file=name, bytes=size)))
        try:
            async with self._http.post("/server/files/upload", body=form) as response:
                body = await response.text(errors="replace")
        except (RequestFailed, TimeoutError) as exc:
            raise CommandRejected(f"upload to Moonraker failed: {str(exc) or type(exc).__name__}") from None
        if response.status >= 300:
            raise CommandRejected(f"Moonraker refused the upload ({response.status}): {_error_text(body)}")
        answer = json.loads(body) if body.strip() else None
        item = answer.get("item", answer.get("result", {}).get("item", {})) if isinstance(answer, dict) else {}
        stored = str(item.get("path", name))
        if stored.rsplit("/", 1)[-1] != name or item.get("size", size) != size:
            raise CommandRejected(f"Moonraker stored {item} instead of {name} ({size} bytes)")
        self.log.info("job file uploaded", file=stored, bytes=size, sha256=digest)
        return stored

    async def start_print(self, name: str) -> None:
        stats = self.klipper.objects.get("print_stats", {})
        if stats.get("state") in ("printing", "paused"):
            raise CommandRejected(f"device {self.id} is busy: Klipper prints {stats.get('filename')}")
        await self._command("start the print", "printer.print.start", {"filename": name})
        # Klipper's own state right after the start, not our snapshot's: deltas come every 0.25 s, and until
        # then the snapshot may still hold an earlier attempt's end under this same file name.
        try:
            fresh = await self._live("start the print").call("printer.objects.query",
                                                              {"objects": self._interest.job()})
        except (RpcError, ConnectionError) as exc:  # the print runs; the next delta will tell
            self.log.warning("state after the start not read", reason=str(exc))
        else:
            self.klipper.replace(fresh.get("status", {}))
        # Once the base has the job, report again: a short file may already be done, with no delta to come.
        asyncio.get_running_loop().call_soon(self._report_now)

    def _report_now(self) -> None:
        if self._socket is not None and self.connected:
            self.heard(self.klipper.report())

    async def pause_print(self) -> None:
        await self._command("pause", "printer.print.pause")

    async def resume_print(self) -> None:
        await self._command("resume", "printer.print.resume")

    async def cancel_print(self) -> None:
        await self._command("cancel", "printer.print.cancel")

    async def stop_now(self) -> None:
        await self._command("stop", "printer.emergency_stop")

    async def firmware_restart(self) -> None:
        """Klipper's FIRMWARE_RESTART: the way out of a shutdown (after an emergency stop, say)."""
        await self._command("restart the firmware", "printer.firmware_restart")

    async def send_gcode(self, command_id: str, lines: list[str]) -> None:
        """Operator console: Klipper runs the lines; its responses come back as one ConsoleOutput."""
        report = self._ready("run console commands")
        if report.state not in _CONSOLE_STATES:
            raise CommandRejected(f"device {self.id} cannot run console commands: it is {report.state.value}")
        script = "\n".join(line.strip() for line in lines if line.strip())
        if not script:
            raise CommandRejected("no command to send: every line is empty")
        async with self._console_lock:
            self._console = output = []
            try:
                await self._live("run console commands").call("printer.gcode.script", {"script": script},
                                                                timeout=CONSOLE_TIMEOUT_S)
            except RpcError as exc:
                if not any(line.startswith("!!") for line in output):
                    output.append(f"!! {exc.message}")
            except ConnectionError as exc:
                raise CommandRejected(f"device {self.id} cannot run console commands: {exc}") from None
            finally:
                await asyncio.sleep(CONSOLE_SETTLE_S)
                self._console = None
                self.emitter.event(ConsoleOutput(device=self.id, command_id=command_id, lines=output[-500:]))


def _error_text(body: str) -> str:
    """Moonraker's error body: ``{"error": {"message", "traceback"}}``. For an HTTP error the message is only
    the status's reason ("Unprocessable Entity"); its own words are on the traceback's last line, in brackets."""
    try:
        error = json.loads(body)["error"]
        message = str(error["message"])
    except (ValueError, KeyError, TypeError):
        return body[:200]
    lines = str(error.get("traceback") or "").strip().splitlines()
    detail = re.search(r"\((.+)\)$", lines[-1]) if lines else None
    return detail.group(1) if detail else message


def create(config: DeviceConfig, emitter: Emitter, poll_interval_s: float) -> MoonrakerPrinter:
    assert config.url is not None, "DeviceConfig requires a url for moonraker"
    return MoonrakerPrinter(config.id, emitter, url=config.url,
                            api_key=config.api_key.get_secret_value() if config.api_key else None,
                            ca_file=config.ca_file,
                            model=config.model, poll_interval_s=poll_interval_s,
                            offline_after_s=config.offline_after_s)
