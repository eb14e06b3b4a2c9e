"""The OctoPrint driver: REST for commands, OctoPrint's push socket for state.

The link: a passive login (``POST /api/login`` with the application key) gives a user
name and session; the raw websocket ``/sockjs/websocket`` is authenticated with them
and then pushes the printer's state, logs and events. OctoPrint asks for a new login
(``reauthRequired``) when the session goes stale or the user changes; we log in again
on the same socket. A refused key is ``AuthFailed``: one clear error, no storm.

When OctoPrint runs but is not connected to its printer (and not because of an error,
which stays for the operator to see), the driver asks it to connect, at most once per
``CONNECT_EVERY_S``.

A job's file is uploaded without ``print=true``, checked (size and SHA-1 as OctoPrint
reports them) and only then selected and started: a start whose answer is lost is
checked against what OctoPrint prints before it counts as failed, and OctoPrint itself
refuses a start while it prints, so a job is never started twice.

No cookies are kept: every REST call carries the key (``X-Api-Key``, which also exempts it
from OctoPrint's CSRF check), and the socket is authenticated with the session named in the
login's answer, so the session cookie ``/api/login`` sets is never needed.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from agent.net import HttpClient, HttpResponse, Multipart, RequestFailed, Timeout, WebSocket
from protocol.messages import ConsoleOutput, DeviceState

from ..base import CommandRejected, Emitter
from ..network import AuthFailed, Backoff, JobPhase, LinkLost, NetworkPrinter, digest_of
from .console import LOG_FILTER, ConsoleReplies, OwedAnswers
from .state import Outcome, PrinterView, outcome_of, printer_unconnected

CONNECT_EVERY_S = 30.0
CONSOLE_WAIT_S = 5.0
HANDSHAKE_WAIT_S = 5.0
"""How long a console command waits for OctoPrint's own M115 on connecting to its printer to be answered."""
_EVENTS = ["PrintStarted", "PrintDone", "PrintFailed", "PrintCancelled", "FirmwareData"]
_LINK_TIMEOUT = Timeout(total=None, connect=5, read=20)
_UPLOAD_TIMEOUT = Timeout(total=None, connect=5, read=300)
"""An upload's answer comes once OctoPrint has stored (and analysed) the whole file."""


class OctoPrintPrinter(NetworkPrinter):
    """A printer behind OctoPrint 1.11, reached with an application key."""

    kind = "octoprint"

    def __init__(self, device_id: str, emitter: Emitter, *, url: str, api_key: str, model: str | None = None,
                 poll_interval_s: float = 2.0, offline_after_s: float | None = None,
                 backoff: Backoff | None = None) -> None:
        super().__init__(device_id, emitter, model=model, poll_interval_s=poll_interval_s,
                         offline_after_s=offline_after_s, backoff=backoff)
        self.url = url.rstrip("/")
        self._api_key = api_key
        self._http: HttpClient | None = None
        self._ws: WebSocket | None = None
        self._view = PrinterView()
        self._server = "OctoPrint"
        self._started: tuple[str, int] | None = None
        """The file this driver last started, with OctoPrint's count of its prints before: checked
        after a reconnect (a count, not a time: the agent's and OctoPrint's clocks may disagree)."""
        self._prints_before: dict[str, int] = {}
        self._last_message = 0.0
        self._last_connect = float("-inf")
        self._consoles: list[ConsoleReplies] = []
        self._owed = OwedAnswers()
        # Set while OctoPrint has no M115 of its own in flight: it sends one just after connecting to its
        # printer, and a console M115 sent meanwhile would be answered by the firmware's reply to OctoPrint's.
        self._handshake_done = asyncio.Event()
        self._handshake_done.set()
        self.malformed = 0
        """Push messages that could not be read (logged, skipped)."""

    # ---------------------------------------------------------------- the link

    async def session(self) -> None:
        key = {"X-Api-Key": self._api_key}
        self._http = HttpClient(self.url, headers=key, timeout=_LINK_TIMEOUT)
        version = await self._link_json("GET", "/api/version")
        self._server = str(version.get("text") or f"OctoPrint {version.get('server', '')}").strip()
        self._view.firmware = self._view.firmware or self._server
        self._owed.reset()
        self._ws = ws = await WebSocket.connect(f"{self.url}/sockjs/websocket", headers=key,
                                                timeout=_LINK_TIMEOUT.read)
        await self._authenticate(ws)
        # Only what the driver reads: state with the log lines the console needs, the job events.
        await ws.send_json({"subscribe": {"state": {"logs": LOG_FILTER, "messages": False},
                                          "events": _EVENTS, "plugins": False}})
        await ws.send_json({"throttle": max(1, round(self.poll_interval_s / 0.5))})
        self._last_message = time.monotonic()
        # Either ends the session: the socket closing, or a check of a quiet link failing.
        tasks = {asyncio.create_task(self._read(ws), name=f"octoprint-read:{self.id}"),
                 asyncio.create_task(self._watch(), name=f"octoprint-watch:{self.id}")}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()
        raise LinkLost(f"OctoPrint closed the push connection ({ws.close_reason or ws.close_code or 'no reason'})")

    async def _read(self, ws: WebSocket) -> None:
        async for message in ws:
            self._last_message = time.monotonic()
            try:
                body = json.loads(message)
                if not isinstance(body, dict):
                    raise TypeError(f"a {type(body).__name__}, not an object")
                await self._received(ws, body)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                # One odd message (a plugin's, a newer OctoPrint's) must not cost the link.
                self.malformed += 1
                self.log.warning("octoprint_message_malformed", error=str(exc), text=message[:200],
                                 malformed_total=self.malformed)

    async def disconnect(self) -> None:
        self._handshake_done.set()
        for collector in self._consoles:
            collector.done.set()
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _authenticate(self, ws: WebSocket) -> None:
        login = await self._link_json("POST", "/api/login", {"passive": True})
        if not login.get("name") or not login.get("session"):
            raise AuthFailed("OctoPrint's login gave no user session for the application key")
        await ws.send_json({"auth": f"{login['name']}:{login['session']}"})

    async def _link_json(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A call the link depends on: a refused key is AuthFailed, anything else a lost link."""
        assert self._http is not None
        async with _request(self._http, method, path, body) as response:
            if response.status in (401, 403):
                raise AuthFailed(f"OctoPrint refused the application key (HTTP {response.status} on {path})")
            if response.status >= 400:
                raise LinkLost(f"OctoPrint answered HTTP {response.status} on {path}: {await _message(response)}")
            answer = await response.json()
        if not isinstance(answer, dict):
            raise LinkLost(f"OctoPrint sent an unexpected answer on {path}")
        return answer

    async def _received(self, ws: WebSocket, body: dict[str, Any]) -> None:
        for kind, data in body.items():
            match kind:
                case "history" | "current" if isinstance(data, dict):
                    for line in self._view.update(data):
                        self._feed_console(line)
                    if kind == "history":
                        await self._converge_missed_outcome()
                    self._report()
                case "event" if isinstance(data, dict):
                    self._event(str(data.get("type")), data.get("payload") or {})
                case "reauthRequired":
                    self.log.info("OctoPrint asks for a new login", reason=(data or {}).get("reason"))
                    await self._authenticate(ws)
                case _:
                    self.alive()

    def _event(self, event: str, payload: dict[str, Any]) -> None:
        if event == "Connected":  # OctoPrint fires it right after sending its own M115
            self._owed.reset()
            self._handshake_done.clear()
            return
        if event == "FirmwareData":  # ...and this one when the firmware's answer came
            self._view.firmware = f"{payload.get('name') or 'unknown firmware'} via {self._server}"
            self._handshake_done.set()
            return
        before = self._view.outcome
        self._view.outcome = outcome_of(event, payload, before)
        if self._view.outcome is not None and self._started and self._started[0] == self._view.outcome.file:
            self._started = None
        if self._view.outcome != before:
            self._report()

    def _report(self) -> None:
        self.heard(self._view.report())

    async def _watch(self) -> None:
        """Keeps a quiet link known to be alive (OctoPrint pushes nothing while it has no printer)
        and connects OctoPrint to its printer when it is not."""
        while True:
            if time.monotonic() - self._last_message > 2 * self.poll_interval_s:
                await self._link_json("GET", "/api/connection")
                self._last_message = time.monotonic()
                self.alive()
            if self._view.state and printer_unconnected(self._view.state) \
                    and time.monotonic() - self._last_connect >= CONNECT_EVERY_S:
                self._last_connect = time.monotonic()
                self.log.info("asking OctoPrint to connect to its printer")
                try:
                    await self._command("POST", "/api/connection", {"command": "connect"}, "connect to its printer")
                except CommandRejected as exc:
                    self.log.warning("OctoPrint could not connect to its printer", reason=str(exc))
            await asyncio.sleep(self.poll_interval_s)

    async def _converge_missed_outcome(self) -> None:
        """After a reconnect: a print this driver started that ended while the link was down."""
        started = self._started
        view = self._view
        if started is None or (view.job_file == started[0] and view.report().job_phase in
                               (JobPhase.PRINTING, JobPhase.PAUSED)):
            return
        name, before = started
        try:
            info = await self._command("GET", f"/api/files/local/{quote(name)}", None, "read the job file")
        except CommandRejected as exc:
            self.log.warning("could not read how the print ended", file=name, reason=str(exc))
            return
        if _print_count(info) <= before:
            return  # no print of it has ended since we started it
        last = ((info or {}).get("prints") or {}).get("last") or {}
        self._started = None
        if last.get("success"):
            view.outcome = Outcome(name, JobPhase.FINISHED)
        else:
            view.outcome = Outcome(name, JobPhase.FAILED, view.state.get("error") or
                                   "the print ended unsuccessfully (failed or cancelled) while the agent "
                                   "was not connected to OctoPrint")

    # ---------------------------------------------------------------- commands

    async def _command(self, method: str, path: str, body: dict[str, Any] | None, what: str) -> Any:
        http = self._http
        if http is None or http.closed:
            raise CommandRejected(f"device {self.id} cannot {what}: not connected to OctoPrint")
        try:
            async with _request(http, method, path, body) as response:
                if response.status >= 400:
                    raise CommandRejected(f"OctoPrint would not {what}: {await _message(response)}"
                                          f" (HTTP {response.status})")
                if response.status == 204:
                    return None
                return await response.json()
        except (RequestFailed, TimeoutError) as exc:
            raise CommandRejected(f"OctoPrint did not answer ({what}): {exc or type(exc).__name__}") from exc

    async def upload(self, path: Path, name: str) -> str:
        http = self._http
        if http is None or http.closed:
            raise CommandRejected(f"device {self.id} cannot upload: not connected to OctoPrint")
        size = path.stat().st_size
        form = (Multipart().file("file", path, filename=name, log=self.log.bind(file=name))
                .field("select", "false").field("print", "false"))
        try:
            async with http.post("/api/files/local", body=form, timeout=_UPLOAD_TIMEOUT) as response:
                if response.status >= 400:
                    raise CommandRejected(f"OctoPrint refused the upload: {await _message(response)}"
                                          f" (HTTP {response.status})")
                answer = await response.json()
        except (RequestFailed, TimeoutError) as exc:
            raise CommandRejected(f"the upload to OctoPrint failed: {exc or type(exc).__name__}") from exc
        stored = str(((answer.get("files") or {}).get("local") or {}).get("path") or name)
        info = await self._command("GET", f"/api/files/local/{quote(stored)}", None, "describe the uploaded file")
        want = await asyncio.to_thread(_sha1_of, path)
        if info.get("size") != size or (info.get("hash") and info["hash"] != want):
            raise CommandRejected(f"OctoPrint stored {stored} as {info.get('size')} bytes (sha1 {info.get('hash')}),"
                                  f" not the {size} bytes (sha1 {want}) sent")
        self._prints_before = {stored: _print_count(info)}
        self.log.info("upload verified", file=stored, bytes=size, sha1=want)
        return stored

    async def start_print(self, name: str) -> None:
        if self._view.outcome is not None and self._view.outcome.file == name:
            self._view.outcome = None
        self._started = (name, self._prints_before.pop(name, 0))
        try:
            await self._command("POST", f"/api/files/local/{quote(name)}", {"command": "select", "print": True},
                                f"start {name}")
        except CommandRejected:
            if await self._prints(name):
                self.log.warning("the start's answer was lost but OctoPrint prints the file", file=name)
                return
            self._started = None
            raise

    async def _prints(self, name: str) -> bool:
        try:
            job = await self._command("GET", "/api/job", None, "describe its job")
        except CommandRejected:
            return False
        file = ((job or {}).get("job") or {}).get("file") or {}
        return file.get("path") == name and str(job.get("state", "")).startswith(("Printing", "Paused", "Starting"))

    async def pause_print(self) -> None:
        await self._command("POST", "/api/job", {"command": "pause", "action": "pause"}, "pause")

    async def resume_print(self) -> None:
        await self._command("POST", "/api/job", {"command": "pause", "action": "resume"}, "resume")

    async def cancel_print(self) -> None:
        await self._command("POST", "/api/job", {"command": "cancel"}, "cancel")

    async def stop_now(self) -> None:
        await self._command("POST", "/api/printer/command", {"commands": ["M112"]}, "send M112")

    async def send_gcode(self, command_id: str, lines: list[str]) -> None:
        """Operator console: ``lines`` go to OctoPrint's command queue, the firmware's replies come back
        from the push socket's log and are emitted as one ConsoleOutput."""
        report = self._ready("run console commands")
        if report.state not in (DeviceState.IDLE, DeviceState.PAUSED):
            raise CommandRejected(f"device {self.id} cannot run console commands: it is {report.state.value}")
        commands = [c for c in (line.split(";", 1)[0].strip() for line in lines) if c]
        if not commands:
            raise CommandRejected("no command to send: every line is empty or a comment")
        try:
            async with asyncio.timeout(HANDSHAKE_WAIT_S):
                await self._handshake_done.wait()
        except TimeoutError:  # a firmware that names itself in no M115 answer: nothing more to wait for
            self._handshake_done.set()
        replies = ConsoleReplies(commands, owed=self._owed.count)
        self._consoles.append(replies)
        try:
            await self._command("POST", "/api/printer/command", {"commands": commands}, "send console commands")
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can lose a cancellation.
                async with asyncio.timeout(CONSOLE_WAIT_S):
                    await replies.done.wait()
            except TimeoutError:
                pass  # a command without an "ok" (or a slow one): report what the firmware said so far
        finally:
            self._consoles.remove(replies)
            self.emitter.event(ConsoleOutput(device=self.id, command_id=command_id, lines=replies.lines[:500]))

    def _feed_console(self, log_line: str) -> None:
        self._owed.seen(log_line)
        for replies in self._consoles:
            replies.seen(log_line)


def _print_count(file_info: Any) -> int:
    """How many prints of a stored file OctoPrint has seen end (its file metadata's statistics)."""
    prints = (file_info or {}).get("prints") or {}
    return int(prints.get("success") or 0) + int(prints.get("failure") or 0)


def _sha1_of(path: Path) -> str:
    # OctoPrint's file metadata keeps a SHA-1 of each stored file.
    with path.open("rb") as f:
        return digest_of(f, "sha1")


def _request(http: HttpClient, method: str, path: str,
             body: dict[str, Any] | None) -> AbstractAsyncContextManager[HttpResponse]:
    """``http.request`` with ``body`` sent as JSON."""
    if body is None:
        return http.request(method, path)
    return http.request(method, path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


async def _message(response: HttpResponse) -> str:
    text = await response.text(errors="replace")
    try:
        body = json.loads(text)
        if isinstance(body, dict) and body.get("error"):
            return str(body["error"])
    except ValueError:
        pass
    return text.strip()[:300] or response.reason or "no reason given"
