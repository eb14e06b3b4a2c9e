"""PrusaLink printers (MK4, XL, MINI on Buddy firmware; MK3 with the Pi-based PrusaLink), over the v1 API.

The API is Prusa's own (Prusa-Link-Web ``spec/openapi.yaml``): HTTP digest login
(``prusalink_http``), ``/api/version`` and ``/api/v1/info`` once per session,
then ``/api/v1/status`` every poll interval (the API has no push), and
``/api/v1/job`` only when the job or the printer's state changes, for the
file's name. A job is uploaded with ``PUT /api/v1/files/{storage}/{name}``
(``Print-After-Upload: ?1``, ``Overwrite: ?1``), its size checked against the
printer's file info, and paused, resumed and stopped through
``/api/v1/job/{id}``.

The v1 API has no emergency stop (no M112, no G-code at all): ``stop_now``
stops the running job with ``DELETE /api/v1/job/{id}``, the closest action the
API documents — the printer ends the print, parks and turns its heaters off,
but it is not an immediate halt of the motors. A person at the printer's
screen has the real one (the reset button / knob).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any


from agent.net import RequestFailed, Timeout, file_chunks

from .base import CommandRejected, Emitter
from .network import AuthFailed, Backoff, NetworkPrinter, PrinterReport
from .prusalink_http import PrinterRefused, PrusaLinkHttp, file_path
from .prusalink_state import (
    ACTIVE_STATES,
    ProgressScale,
    printer_problem,
    read_state,
    seconds,
    temperatures,
)

if TYPE_CHECKING:
    from agent.config import DeviceConfig

UPLOAD_TIMEOUT = Timeout(total=None, connect=10, read=120)
"""An upload may take minutes on a slow printer; what must not stall is each read and the connect."""


class PrusaLinkPrinter(NetworkPrinter):
    kind = "prusalink"

    def __init__(self, device_id: str, emitter: Emitter, *, url: str, username: str | None = None,
                 password: str | None = None, api_key: str | None = None, model: str | None = None,
                 poll_interval_s: float = 2.0, offline_after_s: float | None = None,
                 backoff: Backoff | None = None) -> None:
        super().__init__(device_id, emitter, model=model, poll_interval_s=poll_interval_s,
                         offline_after_s=offline_after_s, backoff=backoff)
        if api_key is None and (username is None or password is None):
            raise ValueError("the prusalink driver needs username and password (or api_key on older builds)")
        self.url = url.rstrip("/")
        self._login = {"username": username, "password": password, "api_key": api_key}
        self._http: PrusaLinkHttp | None = None
        self._firmware: str | None = None
        self._storage = "usb"
        self._printer_state = "IDLE"
        self._job_id: int | None = None
        """The id the printer gave its current (or last) job: the v1 job commands need it."""
        self._job_seen: tuple[int | None, str] = (None, "")
        self._job_info: dict[str, Any] | None = None
        self._progress = ProgressScale()
        self.malformed = 0
        """Status replies that were not the status the spec describes (logged and skipped)."""

    # ---------------------------------------------------------------- the session

    async def session(self) -> None:
        timeout = max(5.0, 2 * self.poll_interval_s)
        self._http = http = PrusaLinkHttp(self.url, timeout_s=timeout, **self._login)  # type: ignore[arg-type]
        self._job_seen, self._job_info = (None, ""), None
        version = (await http.get("/api/version")).json() or {}
        self._firmware = _firmware_words(version)
        await self._read_info(http)
        await self._pick_storage(http)
        self.log.info("printer logged in", firmware=self._firmware, storage=self._storage)
        while True:
            await self._poll(http)
            await asyncio.sleep(self.poll_interval_s)

    async def disconnect(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    async def _read_info(self, http: PrusaLinkHttp) -> None:
        try:
            info = (await http.get("/api/v1/info")).json() or {}
        except PrinterRefused as exc:
            if exc.status == 404:
                raise PrinterRefused(404, "this printer has no PrusaLink v1 API (firmware too old)") from exc
            raise
        self.log.info("printer identified", name=info.get("name"), serial=info.get("serial"))

    async def _pick_storage(self, http: PrusaLinkHttp) -> None:
        """The first storage that takes uploads: ``/usb`` on Buddy printers, ``/local`` on the Pi's PrusaLink."""
        try:
            listing = (await http.get("/api/v1/storage")).json() or {}
        except PrinterRefused:
            return  # builds without the endpoint store on the USB stick
        writable = [s for s in listing.get("storage_list") or []
                    if isinstance(s, dict) and s.get("path") and not s.get("read_only")]
        # An available one first; a storage the printer has but cannot use now is still where files go.
        writable.sort(key=lambda s: not s.get("available", True))
        if writable:
            self._storage = str(writable[0]["path"]).strip("/")

    async def _poll(self, http: PrusaLinkHttp) -> None:
        reply = await http.get("/api/v1/status", conditional=True)
        try:
            status = reply.json()
        except ValueError:
            status = None
        if not isinstance(status, dict) or not isinstance(status.get("printer"), dict):
            self.malformed += 1
            self.log.warning("malformed status ignored", body=reply.body[:200], malformed=self.malformed)
            self.alive()  # the printer answered; what it said is logged and counted, the link stays up
            return
        self.heard(await self._report(http, status))

    async def _report(self, http: PrusaLinkHttp, status: dict[str, Any]) -> PrinterReport:
        printer: dict[str, Any] = status["printer"]
        state = str(printer.get("state", "")).upper()
        job = status.get("job") if isinstance(status.get("job"), dict) else None
        job_id = job.get("id") if job else None
        self._printer_state = state
        if job_id is not None:
            self._job_id = job_id
        # A finished or stopped job may be left out of the status yet still be the printer's last job.
        if job_id is None and state not in ("FINISHED", "STOPPED"):
            self._job_info = None
        elif (job_id, state) != self._job_seen or (job_id is not None and (self._job_info or {}).get("id") != job_id):
            # The job's file name and its own state: only asked when the job or the printer's state changes.
            self._job_info = await self._current_job(http)
        self._job_seen = (job_id, state)
        info = self._job_info if self._job_info and (job_id is None or self._job_info.get("id") == job_id) else None
        job_state = str(info.get("state")).upper() if info else ("PRINTING" if job and state in ACTIVE_STATES
                                                                   else None)
        reading = read_state(state, job_state, printer_problem(printer))
        job = job or {}
        return PrinterReport(
            state=reading.state, temperatures=temperatures(printer), job_file=_file_name(info),
            job_phase=reading.phase,
            progress=self._progress.fraction(job_id, job.get("progress"), job.get("time_printing"),
                                             job.get("time_remaining")),
            remaining_s=seconds(job.get("time_remaining")), error=reading.error, firmware=self._firmware)

    # ---------------------------------------------------------------- commands

    def _client(self) -> PrusaLinkHttp:
        if self._http is None:
            raise CommandRejected(f"device {self.id} is not connected")
        return self._http

    async def upload(self, path: Path, name: str) -> str:
        http = self._client()
        if self._printer_state == "BUSY":
            raise CommandRejected(f"device {self.id} is busy (the printer reports BUSY)")
        # A cheap request first renews a nonce that went stale while idle: a refused PUT would waste the upload.
        await self._pick_storage(http)
        size = path.stat().st_size
        target = file_path(self._storage, name)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size),
                   "Print-After-Upload": "?1", "Overwrite": "?1"}
        try:
            await http.request("PUT", target, headers=headers, timeout=UPLOAD_TIMEOUT,
                               body=lambda: file_chunks(path, self.log.bind(file=name)))
        except PrinterRefused as exc:
            raise CommandRejected(f"the printer refused the upload: {exc.text}") from exc
        stored = (await http.get(target)).json() or {}
        if stored.get("size") is None:
            # Nothing to compare: the printer's 201 for the whole declared length is the only check there is.
            self.log.warning("printer gives no file size; upload taken on its 201", file=name, bytes=size)
        elif stored.get("size") != size:
            await self._abandon(http, name)
            raise CommandRejected(f"upload of {name} arrived with {stored.get('size')} bytes of {size}")
        self.log.info("upload stored", file=name, bytes=size, storage=self._storage)
        return name

    async def _abandon(self, http: PrusaLinkHttp, name: str) -> None:
        """A bad upload may have started printing already (Print-After-Upload): stop it and delete the file."""
        current = await self._current_job(http)
        if current and _file_name(current) == name and current.get("id") is not None:
            await self._job_command(http, "DELETE", f"/api/v1/job/{current['id']}", "stop")
        try:
            await http.request("DELETE", file_path(self._storage, name))
        except PrinterRefused as exc:
            self.log.warning("bad upload not deleted", file=name, reason=exc.text)

    async def start_print(self, name: str) -> None:
        http = self._client()
        # Print-After-Upload usually started it already; a printer that waits for a confirmation did not.
        current = await self._current_job(http)
        if not (current and _file_name(current) == name
                and str(current.get("state")).upper() in ("PRINTING", "PAUSED")):
            try:
                await http.request("POST", file_path(self._storage, name))
            except PrinterRefused as exc:
                current = await self._current_job(http)
                if not (exc.status == 409 and current and _file_name(current) == name):
                    raise CommandRejected(f"the printer did not start {name}: {exc.text}") from exc
        # The started job in the report before anyone acts on it: a cancel a moment later must reach the printer.
        await self._poll(http)

    async def _current_job(self, http: PrusaLinkHttp) -> dict[str, Any] | None:
        reply = await http.get("/api/v1/job")
        job = reply.json() if reply.status == 200 else None
        return job if isinstance(job, dict) else None

    async def pause_print(self) -> None:
        await self._job_command(self._client(), "PUT", f"/api/v1/job/{self._require_job_id()}/pause", "pause")

    async def resume_print(self) -> None:
        await self._job_command(self._client(), "PUT", f"/api/v1/job/{self._require_job_id()}/resume", "resume")

    async def cancel_print(self) -> None:
        await self._job_command(self._client(), "DELETE", f"/api/v1/job/{self._require_job_id()}", "stop")

    async def stop_now(self) -> None:
        """No e-stop in the v1 API: stop the running job (the printer parks and cools), the nearest it has."""
        if self._job_id is None or self._printer_state not in ACTIVE_STATES:
            raise CommandRejected(f"device {self.id}: PrusaLink's API has no emergency stop, and there is no "
                                  "running job to stop (use the printer's reset button)")
        self.log.warning("emergency stop: PrusaLink has no M112; stopping the job instead", job=self._job_id)
        await self._job_command(self._client(), "DELETE", f"/api/v1/job/{self._job_id}", "stop")

    def _require_job_id(self) -> int:
        if self._job_id is None:
            raise CommandRejected(f"device {self.id}: the printer reports no job")
        return self._job_id

    async def _job_command(self, http: PrusaLinkHttp, method: str, path: str, what: str) -> None:
        try:
            await http.request(method, path)
        except PrinterRefused as exc:
            raise CommandRejected(f"the printer refused to {what} the job: {exc.text}") from exc
        except AuthFailed as exc:
            raise CommandRejected(f"could not {what} the job: login refused: {exc}") from exc
        except (RequestFailed, TimeoutError) as exc:
            raise CommandRejected(f"could not {what} the job: the printer did not answer "
                                  f"({exc or type(exc).__name__})") from exc


def _file_name(job: dict[str, Any] | None) -> str | None:
    """The job's file as the printer names it: the long name (Buddy's ``name`` is an 8.3 short name)."""
    file = job.get("file") if job else None
    if not isinstance(file, dict):
        return None
    name = file.get("display_name") or file.get("name")
    return str(name) if name else None


def _firmware_words(version: dict[str, Any]) -> str | None:
    text, firmware = version.get("text"), version.get("firmware")
    parts = [str(p) for p in (text, f"firmware {firmware}" if firmware else None) if p]
    return ", ".join(parts) or None


def create(config: DeviceConfig, emitter: Emitter, poll_interval_s: float) -> PrusaLinkPrinter:
    assert config.url is not None, "DeviceConfig requires a url for prusalink"
    return PrusaLinkPrinter(
        config.id, emitter, url=config.url, username=config.username,
        password=config.password.get_secret_value() if config.password else None,
        api_key=config.api_key.get_secret_value() if config.api_key else None,
        model=config.model, poll_interval_s=poll_interval_s, offline_after_s=config.offline_after_s)
