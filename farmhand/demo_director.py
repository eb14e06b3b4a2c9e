"""What keeps the demo farm busy until Ctrl-C, through the hub's HTTP API as an operator would:
materials and spools loaded on every printer (a fresh one when one runs low), a steady queue of jobs
from the demo's parts, orders from a few customers whose stages get signed off once printed, a filament
runout on one printer and a thermal runaway on another now and then, and a render job on the render
node whenever the last one finished. Times are in the farm's own time: ``speed`` shortens them all."""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from .demo_parts import PARTS

log = structlog.get_logger("farmhand.demo")

MATERIALS = (  # (type, name, colour, density)
    ("PLA", "Signal Red", "#d32f2f", 1.24), ("PLA", "Ocean Blue", "#1565c0", 1.24),
    ("PLA", "Snow White", "#f5f5f5", 1.24), ("PETG", "Signal Orange", "#ff6600", 1.27),
    ("PLA", "Leaf Green", "#2e7d32", 1.24),
)
CUSTOMERS = ("Acme Robotics", "Northwind Models", "Studio Kettle")
STAGES = ["support_removal", "qc", "packed", "shipped"]
SPOOL_GRAMS = 250  # small spools, so a watcher sees them go down and get replaced
LOW_GRAMS = 40


class Director:
    def __init__(self, http: aiohttp.ClientSession, base: str, farm: Any, *, speed: float,
                 fault_every_s: float = 600.0, order_every_s: float = 300.0, seed: int = 1) -> None:
        """``farm``: the running ``DemoFarm``; the periods are farm time (divided by ``speed`` on the wall)."""
        self.http, self.base, self.farm = http, base, farm
        self.speed = speed
        self.fault_every_s = fault_every_s
        self.order_every_s = order_every_s
        self.rng = random.Random(seed)
        self.parts: list[str] = []
        self.filaments: list[int] = []
        self.counts = {"jobs": 0, "orders": 0, "stages": 0, "runouts": 0, "thermal_faults": 0, "spools": 0,
                       "render_jobs": 0}
        self._render_job: int | None = None
        self._halted_at: float | None = None
        self._blend: str | None = None

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        async with self.http.request(method, f"{self.base}{path}", **kw) as r:
            body = await r.json() if r.content_type.endswith("json") else await r.text()
            if r.status >= 400:
                raise RuntimeError(f"{method} {path}: {r.status} {body}")
            return body

    # ------------------------------------------------------------------ set-up

    async def setup(self) -> None:
        for kind, name, colour, density in MATERIALS:
            f = await self.call("POST", "/api/v1/filaments", json={
                "material": kind, "name": name, "color_hex": colour, "density": density, "weight": SPOOL_GRAMS,
                "price": 22.0})
            self.filaments.append(f["id"])
        for i, printer in enumerate(await self.wait_for_printers()):
            await self.load_fresh(printer["ref"], self.filaments[i % len(self.filaments)])
        for part in PARTS:
            info = await self.call("POST", "/api/v1/files", params={"name": f"{part.name.replace(' ', '-')}.gcode"},
                                   data=part.gcode().encode(), headers={"Content-Type": "application/octet-stream"})
            self.parts.append(info["sha256"])
        if self.farm.blender:
            scene = Path(self.farm.data_dir) / "scene.blend"
            from .scene import make_scene

            await asyncio.to_thread(make_scene, scene, blender=self.farm.blender, width=96, height=54,
                                    samples=4, frame_start=1, frame_end=8)
            info = await self.call("POST", "/api/v1/files", params={"name": "turntable.blend"}, data=scene.read_bytes(),
                                   headers={"Content-Type": "application/octet-stream"})
            self._blend = info["sha256"]

    async def wait_for_printers(self, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """The hub's printers once every one the farm started has announced itself (a loaded machine takes a
        while); whatever is there after ``timeout_s`` — the loop loads the latecomers (``replace_low_spools``)."""
        deadline = time.monotonic() + timeout_s
        while len(found := await self.printers()) < len(self.farm.printers) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        return found

    async def printers(self) -> list[dict[str, Any]]:
        return [d for d in (await self.call("GET", "/api/v1/devices?limit=1000"))["items"] if d["kind"] != "blender"]

    async def load_fresh(self, ref: str, filament_id: int) -> None:
        spool = await self.call("POST", "/api/v1/spools", json={"filament_id": filament_id, "location": "rack"})
        await self.call("POST", f"/api/v1/devices/{ref}/spool", json={"spool_id": spool["id"]})
        self.counts["spools"] += 1

    # ------------------------------------------------------------------ the loop

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set: one round a second (wall), each step's failure logged, never fatal."""
        last_fault = last_order = time.monotonic()
        fault_turn = 0
        while not stop.is_set():
            for step in (self.keep_queue_full, self.replace_low_spools, self.sign_off_stages, self.resume_runouts,
                         self.power_cycle_halted, self.keep_rendering):
                try:
                    await step()
                except Exception as exc:  # the demo goes on; the farm's own state is the hub's
                    log.warning("demo_step_failed", step=step.__name__, error=str(exc))
            now = time.monotonic()
            if (now - last_order) * self.speed >= self.order_every_s:
                last_order = now
                await self._safely(self.take_order)
            if (now - last_fault) * self.speed >= self.fault_every_s / 2:
                last_fault = now
                fault_turn += 1
                await self._safely(self.runout if fault_turn % 2 else self.thermal_fault)
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass

    async def _safely(self, step: Any) -> None:
        try:
            await step()
        except Exception as exc:
            log.warning("demo_step_failed", step=step.__name__, error=str(exc))

    async def keep_queue_full(self) -> None:
        queued = (await self.call("GET", "/api/v1/jobs?state=queued&limit=1000"))["items"]
        for _ in range(max(0, len(self.farm.printers) - len(queued))):
            n = self.counts["jobs"] = self.counts["jobs"] + 1
            part = self.rng.randrange(len(self.parts))
            await self.call("POST", "/api/v1/jobs", json={"file_sha256": self.parts[part],
                                                         "name": f"{PARTS[part].name} #{n}"})

    async def replace_low_spools(self) -> None:
        """A fresh spool on every printer that is not printing and has none, or one nearly empty."""
        for d in await self.printers():
            m = d.get("material")
            if (not m or m["remaining_grams"] < LOW_GRAMS) and d["online"] and d["state"] != "printing":
                await self.load_fresh(d["ref"], self.filaments[self.rng.randrange(len(self.filaments))])

    async def take_order(self) -> None:
        items = [{"file_sha256": self.parts[p], "copies": self.rng.randint(1, 2)}
                 for p in self.rng.sample(range(len(self.parts)), 2)]
        await self.call("POST", "/api/v1/orders", json={
            "customer": self.rng.choice(CUSTOMERS), "reference": f"PO-{1000 + self.counts['orders']}",
            "stages": STAGES, "items": items})
        self.counts["orders"] += 1

    async def sign_off_stages(self) -> None:
        for o in (await self.call("GET", "/api/v1/orders?limit=1000"))["items"]:
            if o["status"] in ("printed", "post_processing") and len(o["stages_done"]) < len(o["stages"]):
                await self.call("POST", f"/api/v1/orders/{o['id']}/stages/{o['stages'][len(o['stages_done'])]}",
                                json={"notes": "demo"})
                self.counts["stages"] += 1
                return  # one stage a round: a person would take a while too

    async def resume_runouts(self) -> None:
        """The operator swapped the filament: resume jobs paused by a runout."""
        for j in (await self.call("GET", "/api/v1/jobs?state=paused&limit=1000"))["items"]:
            await self.call("POST", f"/api/v1/jobs/{j['id']}/resume")

    async def printing(self, index: int) -> bool:
        return any(d["ref"].endswith(f"/printer-{index}") and d["state"] == "printing" for d in await self.printers())

    async def runout(self) -> None:
        """Printer 0's filament sensor trips mid-print (resumed next round, as after a swap)."""
        if await self.printing(0):
            self.farm.printers[0].inject_runout()
            self.counts["runouts"] += 1

    async def thermal_fault(self) -> None:
        """Printer 1's firmware halts on a thermal runaway: its job fails in the firmware's words."""
        index = min(1, len(self.farm.printers) - 1)
        if await self.printing(index) and not self.farm.printers[index].halted:
            self.farm.printers[index].inject_thermal_runaway()
            self.counts["thermal_faults"] += 1
            self._halted_at = time.monotonic()

    async def power_cycle_halted(self) -> None:
        """Two farm minutes after a thermal runaway the operator power-cycles the printer: it boots again."""
        if self._halted_at is None or (time.monotonic() - self._halted_at) * self.speed < 120:
            return
        self._halted_at = None
        for printer in self.farm.printers:
            if printer.halted:
                printer.inject_reset()

    async def keep_rendering(self) -> None:
        if self._blend is None:
            return
        if self._render_job is not None:
            job = await self.call("GET", f"/api/v1/render-jobs/{self._render_job}")
            if job["state"] in ("queued", "rendering", "paused"):
                return
        job = await self.call("POST", "/api/v1/render-jobs", json={
            "blend_sha256": self._blend, "name": f"turntable #{self.counts['render_jobs'] + 1}",
            "frame_start": 1, "frame_end": 8})
        self._render_job = job["jobs"][0]["id"]
        self.counts["render_jobs"] += 1


def find_blender() -> str | None:
    return shutil.which("blender")
