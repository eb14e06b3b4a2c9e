"""What a print costs: the cost model, quotes before printing and the actual cost after.

One function, ``breakdown``, turns (grams, hours, machine) into priced lines,
so a quick quote (grams and time from the mesh alone), a precise quote (from
sliced G-code: its filament and our time estimate) and a finished job's actual
cost (measured duration and ``extruded_mm``) are priced the same way.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path, PurePath

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from hub.analysis import QuoteSettings, quick_quote_file
from hub.analysis.quick_quote import DENSITY_G_CM3
from hub.api import Op, body, respond, row_id
from hub.api.problems import ApiProblem
from hub.files import FileAnalyses
from hub.jobs import filament_grams, machine
from hub.slicing import SliceJobs, SliceRequest
from hub.store import Store, utcnow

log = structlog.get_logger("farmhand.hub.costing")

SETTINGS_KEY = "cost_model"


class MaterialCost(BaseModel):
    model_config = ConfigDict(extra="forbid")
    price_per_kg: float = Field(ge=0)
    density_g_cm3: float = Field(gt=0)


class PrinterCost(BaseModel):
    model_config = ConfigDict(extra="forbid")
    power_w: float | None = Field(None, ge=0, description="default: the machine model's printing draw")
    purchase_price: float = Field(800, ge=0)
    lifetime_hours: float = Field(5000, gt=0)
    maintenance_per_hour: float = Field(0.05, ge=0)


class CostModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    currency: str = Field("EUR", min_length=3, max_length=3)
    materials: dict[str, MaterialCost] = Field(default_factory=lambda: {
        m: MaterialCost(price_per_kg=25.0, density_g_cm3=d) for m, d in DENSITY_G_CM3.items()})
    printers: dict[str, PrinterCost] = Field(default_factory=dict, description="by machine model id")
    default_printer: PrinterCost = Field(default_factory=PrinterCost)
    energy_price_per_kwh: float = Field(0.30, ge=0)
    labour_minutes_per_job: float = Field(10, ge=0)
    labour_rate_per_hour: float = Field(30, ge=0)
    failure_margin_pct: float = Field(10, ge=0, le=100)
    markup_pct: float = Field(30, ge=0, le=1000)


class Line(BaseModel):
    item: str
    detail: str
    amount: float


class Costing(BaseModel):
    kind: str = Field(description="quick, precise or actual")
    currency: str
    grams: float
    hours: float
    machine_model: str | None
    material: str
    lines: list[Line]
    cost: float = Field(description="before markup")
    price: float = Field(description="cost plus markup")
    gcode_sha256: str | None = Field(None, description="the G-code a precise quote priced")


class QuoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    machine_model: str | None = None
    material: str = "PLA"
    copies: int = Field(1, ge=1, le=10_000)
    quality: str | None = Field(None, description="for a mesh: slice it with this quality layer (and machine_model,"
                                                   " material) and quote the G-code precisely; unset: quick quote")


def breakdown(model: CostModel, kind: str, grams: float, hours: float, machine_model: str | None, material: str,
              copies: int = 1) -> Costing:
    mat = model.materials.get(material.upper())
    if mat is None:
        raise ApiProblem(422, "Unknown material", f"the cost model has no price for {material!r} "
                                                  f"(known: {', '.join(model.materials)})")
    printer = model.printers.get(machine_model or "", model.default_printer)
    m = machine(machine_model)
    watts = printer.power_w if printer.power_w is not None else (m.power.printing if m else 150.0)
    cur = model.currency

    def line(item: str, detail: str, amount: float) -> Line:
        return Line(item=item, detail=detail, amount=round(amount * copies, 4))

    lines = [
        line("material", f"{grams:.1f} g × {mat.price_per_kg:g} {cur}/kg", grams / 1000 * mat.price_per_kg),
        line("energy", f"{hours:.2f} h × {watts:g} W × {model.energy_price_per_kwh:g} {cur}/kWh",
             hours * watts / 1000 * model.energy_price_per_kwh),
        line("depreciation", f"{hours:.2f} h × {printer.purchase_price:g} {cur} / {printer.lifetime_hours:g} h",
             hours * printer.purchase_price / printer.lifetime_hours),
        line("maintenance", f"{hours:.2f} h × {printer.maintenance_per_hour:g} {cur}/h",
             hours * printer.maintenance_per_hour),
        line("labour", f"{model.labour_minutes_per_job:g} min × {model.labour_rate_per_hour:g} {cur}/h",
             model.labour_minutes_per_job / 60 * model.labour_rate_per_hour),
    ]
    subtotal = sum(x.amount for x in lines)
    margin = Line(item="failure margin", detail=f"{model.failure_margin_pct:g} %",
                  amount=round(subtotal * model.failure_margin_pct / 100, 4))
    cost = subtotal + margin.amount
    markup = Line(item="markup", detail=f"{model.markup_pct:g} %", amount=round(cost * model.markup_pct / 100, 4))
    if copies > 1:
        lines.insert(0, Line(item="copies", detail=f"{copies} copies; every line is for all of them", amount=0.0))
    return Costing(kind=kind, currency=cur, grams=round(grams * copies, 3), hours=round(hours * copies, 4),
                   machine_model=machine_model, material=material.upper(), lines=[*lines, margin, markup],
                   cost=round(cost, 2), price=round(cost + markup.amount, 2))


def _quick(path: str, name: str, material: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="farmhand-quote-") as tmp:
        link = Path(tmp) / f"model{PurePath(name.lower()).suffix}"
        os.symlink(path, link)
        q = quick_quote_file(link, QuoteSettings(material=material))
    return q.grams, q.time_s / 3600


class Costs:
    def __init__(self, store: Store, analyses: FileAnalyses, slicing: SliceJobs) -> None:
        """``slicing``: precise quotes of meshes slice them."""
        self.store = store
        self.analyses = analyses
        self.slicing = slicing

    def model(self) -> CostModel:
        row = self.store.one("SELECT body FROM settings WHERE key = ?", (SETTINGS_KEY,))
        return CostModel.model_validate_json(row["body"]) if row else CostModel()

    def set_model(self, model: CostModel) -> CostModel:
        self.store.db.execute("INSERT OR REPLACE INTO settings (key, body, updated_at) VALUES (?, ?, ?)",
                              (SETTINGS_KEY, model.model_dump_json(), utcnow()))
        log.info("cost_model_updated", currency=model.currency)
        return model

    async def quote(self, req: QuoteRequest) -> Costing:
        kind, analysis = await self.analyses.body(req.file_sha256)
        model = self.model()
        material = req.material.upper()
        gcode_sha = req.file_sha256
        if kind == "mesh" and req.quality is not None:
            if req.machine_model is None:
                raise ApiProblem(422, "Cannot quote", "a precise quote of a mesh slices it: give machine_model too")
            sliced = await self.slicing.sliced(SliceRequest(
                mesh_sha256=req.file_sha256, machine_model=req.machine_model, material=req.material.lower(),
                quality=req.quality))
            assert sliced.gcode_sha256 is not None
            gcode_sha = sliced.gcode_sha256
            kind, analysis = await self.analyses.body(gcode_sha)
        if kind == "mesh":
            path, name = str(self.analyses.files.path(req.file_sha256)), self.analyses.files.get(req.file_sha256)
            try:
                grams, hours = await asyncio.to_thread(_quick, path, name["name"], material)
            except ValueError as exc:
                raise ApiProblem(422, "Cannot quote", str(exc)) from None
            return breakdown(model, "quick", grams, hours, req.machine_model, material, req.copies)
        mat = model.materials.get(material)
        density = mat.density_g_cm3 if mat else 1.24
        grams = sum(filament_grams(t["filament_mm"], density, 1.75) for t in analysis["extrusion"])
        quote = breakdown(model, "precise", grams, analysis["estimate"]["total_s"] / 3600, req.machine_model,
                          material, req.copies)
        return quote.model_copy(update={"gcode_sha256": gcode_sha})

    def job_cost(self, job_id: int) -> Costing:
        job = self.store.one(
            "SELECT j.*, d.model, u.grams AS booked_g, f.material AS spool_material, r.material AS req_material"
            " FROM jobs j LEFT JOIN devices d ON d.node = j.node AND d.id = j.device"
            " LEFT JOIN spool_usage u ON u.job_id = j.id AND u.attempt = j.attempt"
            " LEFT JOIN spools s ON s.id = u.spool_id LEFT JOIN filaments f ON f.id = s.filament_id"
            " LEFT JOIN job_requirements r ON r.job_id = j.id WHERE j.id = ?", (job_id,))
        if job is None:
            raise ApiProblem(404, "Job not found", f"no job {job_id}")
        if job["duration_s"] is None:
            raise ApiProblem(409, "Not finished", f"job {job_id} is {job['state']}: its cost is known once it ends")
        model = self.model()
        material = job["spool_material"] or job["req_material"] or "PLA"
        grams = job["booked_g"]
        if not grams:
            mat = model.materials.get(material.upper())
            grams = filament_grams(job["extruded_mm"] or 0.0, mat.density_g_cm3 if mat else 1.24, 1.75)
        return breakdown(model, "actual", grams, job["duration_s"] / 3600, job["model"], material)

    def ops(self) -> list[Op]:
        tags = ("costs",)
        return [
            Op("GET", "/api/v1/cost-model", self.get_model, response=CostModel, tags=tags,
               summary="Prices of material, machine time, labour and markup"),
            Op("PUT", "/api/v1/cost-model", self.put_model, body=CostModel, response=CostModel, tags=tags,
               summary="Set the cost model"),
            Op("POST", "/api/v1/quotes", self.post_quote, body=QuoteRequest, response=Costing, tags=tags,
               summary="What a file would cost to print (meshes: sliced when a machine model is given)"),
            Op("GET", "/api/v1/jobs/{id}/cost", self.get_cost, response=Costing, tags=("jobs",),
               summary="What a finished job cost, from the filament it used and its time"),
        ]

    async def get_model(self, request: web.Request) -> web.Response:
        return respond(self.model())

    async def put_model(self, request: web.Request) -> web.Response:
        return respond(self.set_model(await body(request, CostModel)))

    async def post_quote(self, request: web.Request) -> web.Response:
        return respond(await self.quote(await body(request, QuoteRequest)))

    async def get_cost(self, request: web.Request) -> web.Response:
        return respond(self.job_cost(row_id(request)))
