"""Filament stock: vendors, filaments and spools (Spoolman's names), spools loaded on printers,
filament booked off a spool when a job ends, and low-stock alerts.

Booking runs at the start of every scheduler pass rather than inside event
ingest: a job's end wakes the scheduler, the pass books every ended job not yet
booked (``spool_usage`` is keyed by job and attempt, so a job is booked once),
and only then are spool levels read for matching.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, RootModel
from sqlite_utils import Database

from hub.api import ApiProblem, Listing, Op, RowId, body, change_of, respond, row_id
from hub.jobs import filament_grams, normalize_color
from hub.ops import raise_alert
from hub.store import Store, utcnow

log = structlog.get_logger("farmhand.hub.stock")

LOW_STOCK_GRAMS = 100.0


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VendorIn(_In):
    name: str = Field(min_length=1, max_length=100)
    comment: str | None = None


class Vendor(BaseModel):
    id: int
    name: str
    comment: str | None
    registered: str


class FilamentIn(_In):
    vendor_id: RowId | None = None
    name: str | None = Field(None, max_length=100)
    material: str = Field(min_length=1, max_length=20, description="type, e.g. PLA, PETG")
    color_hex: str | None = Field(None, pattern=r"^#?[0-9A-Fa-f]{6}$")
    density: float = Field(gt=0, le=5, description="g/cm³")
    diameter: float = Field(1.75, gt=0, le=5, description="mm")
    price: float | None = Field(None, ge=0, description="price of one spool")
    weight: float | None = Field(None, gt=0, description="net grams of filament on a new spool")
    spool_weight: float | None = Field(None, ge=0, description="grams of the empty spool")
    comment: str | None = None


class Filament(BaseModel):
    id: int
    vendor: Vendor | None
    name: str | None
    material: str
    color_hex: str | None
    density: float
    diameter: float
    price: float | None
    weight: float | None
    spool_weight: float | None
    comment: str | None
    registered: str


class SpoolIn(_In):
    filament_id: RowId
    initial_weight: float | None = Field(None, gt=0, description="net grams; default: the filament's weight")
    used_weight: float = Field(0, ge=0)
    price: float | None = Field(None, ge=0)
    lot_nr: str | None = Field(None, max_length=100)
    location: str | None = Field(None, max_length=100)
    comment: str | None = None


class Spool(BaseModel):
    id: int
    filament: Filament
    initial_weight: float
    used_weight: float
    remaining_weight: float
    price: float | None
    lot_nr: str | None
    location: str | None
    comment: str | None
    archived: bool
    loaded_on: str | None = Field(description="'node/device' it is loaded on")
    registered: str
    first_used: str | None
    last_used: str | None


FilamentChange = change_of(FilamentIn, "FilamentChange")
SpoolChange = change_of(
    SpoolIn, "SpoolChange",
    initial_weight=(float, Field(gt=0, description="net grams on the spool when it was new")),
    archived=(bool, Field(description="used up or put away: no longer offered for loading; unload it first")))


class LoadSpool(_In):
    spool_id: RowId | None = Field(description="null unloads the printer")


class Unloaded(BaseModel):
    loaded: None = None


class LoadedSpool(RootModel[Spool | Unloaded]):
    """The spool now on the printer, or ``{"loaded": null}`` after an unload."""


class Stock:
    def __init__(self, store: Store, low_stock_grams: float = LOW_STOCK_GRAMS) -> None:
        self.store = store
        self.low_stock_grams = low_stock_grams

    # ------------------------------------------------------------------ records

    def add_vendor(self, v: VendorIn) -> Vendor:
        with self.store.transaction() as db:
            if db.execute("SELECT 1 FROM vendors WHERE name = ?", (v.name,)).fetchone():
                raise web.HTTPConflict(text=f"a vendor named {v.name!r} exists")
            vid = db.execute("INSERT INTO vendors (name, comment, registered) VALUES (?, ?, ?)",
                             (v.name, v.comment, utcnow())).lastrowid
        return self.vendor(vid)

    def vendor(self, vid: int) -> Vendor:
        r = self.store.one("SELECT * FROM vendors WHERE id = ?", (vid,))
        if r is None:
            raise web.HTTPNotFound(text=f"no vendor {vid}")
        return Vendor(**r)

    def add_filament(self, f: FilamentIn) -> Filament:
        if f.vendor_id is not None:
            self.vendor(f.vendor_id)
        data = f.model_dump()
        data["color_hex"] = normalize_color(f.color_hex)
        data["material"] = f.material.upper()
        with self.store.transaction() as db:
            fid = db.execute(
                f"INSERT INTO filaments ({', '.join(data)}, registered) VALUES ({', '.join('?' * len(data))}, ?)",
                (*data.values(), utcnow())).lastrowid
        return self.filament(fid)

    def filament(self, fid: int) -> Filament:
        r = self.store.one("SELECT * FROM filaments WHERE id = ?", (fid,))
        if r is None:
            raise web.HTTPNotFound(text=f"no filament {fid}")
        vendor = self.vendor(r["vendor_id"]) if r["vendor_id"] is not None else None
        return Filament(**{k: v for k, v in r.items() if k != "vendor_id"}, vendor=vendor)

    def update_filament(self, fid: int, change: BaseModel) -> Filament:
        self.filament(fid)
        data = change.model_dump(exclude_unset=True)
        if data.get("vendor_id") is not None:
            self.vendor(data["vendor_id"])
        if "color_hex" in data:
            data["color_hex"] = normalize_color(data["color_hex"])
        if "material" in data:
            data["material"] = data["material"].upper()
        self._update("filaments", fid, data)
        return self.filament(fid)

    def _update(self, table: str, row: int, data: dict[str, Any]) -> None:
        if data:
            with self.store.transaction() as db:
                db.execute(f"UPDATE {table} SET {', '.join(f'{k} = ?' for k in data)} WHERE id = ?",
                           (*data.values(), row))
        log.info(f"{table[:-1]}_updated", id=row, fields=sorted(data))

    def add_spool(self, s: SpoolIn) -> Spool:
        filament = self.filament(s.filament_id)
        initial = s.initial_weight or filament.weight
        if initial is None:
            raise web.HTTPUnprocessableEntity(text="initial_weight is needed: the filament states no weight")
        with self.store.transaction() as db:
            sid = db.execute(
                "INSERT INTO spools (filament_id, initial_weight, used_weight, price, lot_nr, location, comment,"
                " registered) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (s.filament_id, initial, s.used_weight, s.price if s.price is not None else filament.price,
                 s.lot_nr, s.location, s.comment, utcnow())).lastrowid
        return self.spool(sid)

    def spool(self, sid: int) -> Spool:
        r = self.store.one("SELECT * FROM spools WHERE id = ?", (sid,))
        if r is None:
            raise web.HTTPNotFound(text=f"no spool {sid}")
        return self._spool(r)

    def update_spool(self, sid: int, change: BaseModel) -> Spool:
        spool = self.spool(sid)
        data = change.model_dump(exclude_unset=True)
        if "filament_id" in data:
            self.filament(data["filament_id"])
        if data.get("archived") and spool.loaded_on:
            raise ApiProblem(409, "Spool is loaded", f"spool {sid} is loaded on {spool.loaded_on}: unload it "
                                                     "before archiving it")
        left = data.get("initial_weight", spool.initial_weight) - data.get("used_weight", spool.used_weight)
        if {"initial_weight", "used_weight"} & data.keys() and left >= self.low_stock_grams:
            data["low_alerted"] = 0  # weighed again and found full enough: warn again when it runs low
        self._update("spools", sid, data)
        return self.spool(sid)

    def _spool(self, r: dict[str, Any]) -> Spool:
        return Spool(
            id=r["id"], filament=self.filament(r["filament_id"]), initial_weight=r["initial_weight"],
            used_weight=r["used_weight"], remaining_weight=max(r["initial_weight"] - r["used_weight"], 0.0),
            price=r["price"], lot_nr=r["lot_nr"], location=r["location"], comment=r["comment"],
            archived=bool(r["archived"]), loaded_on=f"{r['node']}/{r['device']}" if r["node"] else None,
            registered=r["registered"], first_used=r["first_used"], last_used=r["last_used"])

    def load(self, node: str, device: str, spool_id: int | None) -> Spool | None:
        if self.store.one("SELECT 1 FROM devices WHERE node = ? AND id = ?", (node, device)) is None:
            raise web.HTTPNotFound(text=f"no device {node}/{device}")
        with self.store.transaction() as db:
            if spool_id is not None:
                spool = self.spool(spool_id)
                if spool.archived:
                    raise web.HTTPConflict(text=f"spool {spool_id} is archived")
            db.execute("UPDATE spools SET node = NULL, device = NULL WHERE node = ? AND device = ?", (node, device))
            if spool_id is not None:
                db.execute("UPDATE spools SET node = ?, device = ?, location = ? WHERE id = ?",
                           (node, device, f"{node}/{device}", spool_id))
        log.info("spool_loaded", device=f"{node}/{device}", spool_id=spool_id)
        return self.spool(spool_id) if spool_id is not None else None

    # ------------------------------------------------------------------ consumption

    def book_finished(self) -> int:
        """Book filament for every ended job not yet booked; returns how many were booked."""
        rows = self.store.all(
            "SELECT * FROM (SELECT j.id, j.attempt, j.finished_at, s.id AS spool_id, f.density, f.diameter,"
            # A device that does not measure its extrusion (the serial driver) ran the whole file when the job
            # completed: the file's analysed filament stands in (issue 19: the demo's spools never went down).
            " COALESCE(j.extruded_mm, CASE WHEN j.state = 'completed' THEN (SELECT SUM(json_extract(e.value,"
            " '$.filament_mm')) FROM file_analyses a, json_each(a.body, '$.extrusion') e"
            " WHERE a.sha256 = j.file_sha256) END) AS extruded_mm"
            " FROM jobs j LEFT JOIN spools s ON s.node = j.node AND s.device = j.device"
            " LEFT JOIN filaments f ON f.id = s.filament_id) j"
            " WHERE j.extruded_mm IS NOT NULL AND j.finished_at IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM spool_usage u WHERE u.job_id = j.id AND u.attempt = j.attempt)")
        for r in rows:
            with self.store.transaction() as db:
                self._book(db, r)
        return len(rows)

    def _book(self, db: Database, r: dict[str, Any]) -> None:
        grams = filament_grams(r["extruded_mm"], r["density"], r["diameter"]) if r["spool_id"] else 0.0
        db.execute("INSERT INTO spool_usage (job_id, attempt, spool_id, grams, booked_at) VALUES (?, ?, ?, ?, ?)",
                   (r["id"], r["attempt"], r["spool_id"], grams, utcnow()))
        if r["spool_id"] is None:
            return
        now = utcnow()
        db.execute("UPDATE spools SET used_weight = used_weight + ?, first_used = COALESCE(first_used, ?),"
                   " last_used = ? WHERE id = ?", (grams, now, now, r["spool_id"]))
        spool = next(db.query("SELECT * FROM spools WHERE id = ?", (r["spool_id"],)))
        left = spool["initial_weight"] - spool["used_weight"]
        log.info("filament_booked", job_id=r["id"], spool_id=r["spool_id"], grams=round(grams, 2),
                 left_g=round(left, 1))
        if left < self.low_stock_grams and not spool["low_alerted"]:
            db.execute("UPDATE spools SET low_alerted = 1 WHERE id = ?", (r["spool_id"],))
            raise_alert(db, "low_stock", f"spool/{r['spool_id']}",
                        f"spool {r['spool_id']} has {max(left, 0):.0f} g left (threshold {self.low_stock_grams:g} g)")

    # ------------------------------------------------------------------ HTTP

    def ops(self) -> list[Op]:
        tags = ("stock",)
        return [
            Op("POST", "/api/v1/vendors", self._post_vendor, body=VendorIn, response=Vendor, status=201, tags=tags,
               summary="Add a filament vendor"),
            Op("GET", "/api/v1/vendors", self._list_vendors, response=Listing[Vendor], tags=tags, summary="Vendors"),
            Op("POST", "/api/v1/filaments", self._post_filament, body=FilamentIn, response=Filament, status=201,
               tags=tags, summary="Add a filament (material, colour, density, price)"),
            Op("PATCH", "/api/v1/filaments/{id}", self._patch_filament, body=FilamentChange, response=Filament,
               tags=tags, summary="Change a filament: only the fields sent"),
            Op("GET", "/api/v1/filaments", self._list_filaments, response=Listing[Filament], tags=tags,
               summary="Filaments"),
            Op("POST", "/api/v1/spools", self._post_spool, body=SpoolIn, response=Spool, status=201, tags=tags,
               summary="Add a spool of a filament"),
            Op("GET", "/api/v1/spools", self._list_spools, response=Listing[Spool], tags=tags,
               summary="Spools with what is left on them"),
            Op("GET", "/api/v1/spools/{id}", self._get_spool, response=Spool, tags=tags, summary="One spool"),
            Op("PATCH", "/api/v1/spools/{id}", self._patch_spool, body=SpoolChange, response=Spool, tags=tags,
               summary="Change a spool (weighed again, moved, archived): only the fields sent"),
            Op("POST", "/api/v1/devices/{node}/{device}/spool", self._load, body=LoadSpool, response=LoadedSpool,
               tags=("devices",), summary="Load a spool on a printer (spool_id null: unload)"),
        ]

    def _all(self, table: str) -> list[dict[str, Any]]:
        return self.store.all(f"SELECT * FROM {table} ORDER BY id")

    async def _list_vendors(self, request: web.Request) -> web.Response:
        return respond(Listing[Vendor](items=[Vendor(**r) for r in self._all("vendors")]))

    async def _list_filaments(self, request: web.Request) -> web.Response:
        return respond(Listing[Filament](items=[self.filament(r["id"]) for r in self._all("filaments")]))

    async def _list_spools(self, request: web.Request) -> web.Response:
        return respond(Listing[Spool](items=[self._spool(r) for r in self._all("spools")]))

    async def _post_vendor(self, request: web.Request) -> web.Response:
        return respond(self.add_vendor(await body(request, VendorIn)), 201)

    async def _post_filament(self, request: web.Request) -> web.Response:
        return respond(self.add_filament(await body(request, FilamentIn)), 201)

    async def _post_spool(self, request: web.Request) -> web.Response:
        return respond(self.add_spool(await body(request, SpoolIn)), 201)

    async def _patch_filament(self, request: web.Request) -> web.Response:
        return respond(self.update_filament(row_id(request), await body(request, FilamentChange)))

    async def _patch_spool(self, request: web.Request) -> web.Response:
        return respond(self.update_spool(row_id(request), await body(request, SpoolChange)))

    async def _get_spool(self, request: web.Request) -> web.Response:
        return respond(self.spool(row_id(request)))

    async def _load(self, request: web.Request) -> web.Response:
        spec = await body(request, LoadSpool)
        spool = self.load(request.match_info["node"], request.match_info["device"], spec.spool_id)
        return respond(LoadedSpool(spool) if spool is not None else LoadedSpool(Unloaded()))
