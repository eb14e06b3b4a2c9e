"""Slicing profile layers: the shipped ones (``hub/slicing-profiles/``) and those operators upload.

An uploaded layer is kept in ``slicing_profiles`` and written out under
``<data_dir>/slicing-profiles/<kind>/<name>.ini`` so ``compose_profile`` finds
it beside the shipped ones. Layers are immutable once stored: a finished slice
is reused for the same (model, machine, material, quality) names, which is only
right while a name always means the same settings. A name the hub ships cannot
be taken, so an upload never silently changes what a shipped name slices.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from hub.api.bodies import body, respond
from hub.api.problems import ApiProblem
from hub.api.routes import Op
from hub.store import Store, utcnow

from .slicer import profile_names

log = structlog.get_logger("farmhand.hub.slicing_profiles")

Kind = Literal["printer", "filament", "quality"]
KINDS: tuple[Kind, ...] = ("printer", "filament", "quality")
MAX_INI_BYTES = 64 * 1024
NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_KEY = re.compile(r"^[a-z0-9_]+$")


class ProfileUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Kind = Field(description="which layer: printer (named after a machine model), filament or quality")
    name: str = Field(pattern=NAME, description="what slice requests call it, e.g. 'draft-0.28' or 'petg-cf'")
    ini: str = Field(description="PrusaSlicer 'key = value' lines; '#' or ';' starts a comment")


class SlicingProfile(BaseModel):
    id: str = Field(description="<kind>/<name>")
    kind: Kind
    name: str
    source: Literal["shipped", "uploaded"]
    keys: int | None = Field(None, description="number of settings (uploaded layers)")
    created_at: str | None = None


class ProfileList(BaseModel):
    items: list[SlicingProfile]


def parse_ini(text: str) -> dict[str, str]:
    """The layer's settings; ``ValueError`` naming the first bad line otherwise."""
    if len(text.encode()) > MAX_INI_BYTES:
        raise ValueError(f"the profile is {len(text.encode())} bytes; at most {MAX_INI_BYTES}")
    keys: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            raise ValueError(f"line {n}: sections are not allowed; a layer is plain 'key = value' lines")
        key, eq, value = line.partition("=")
        key = key.strip()
        if not eq:
            raise ValueError(f"line {n}: expected 'key = value', got {line[:60]!r}")
        if not _KEY.match(key):
            raise ValueError(f"line {n}: key {key[:60]!r} may hold only a-z, 0-9 and _")
        if key in keys:
            raise ValueError(f"line {n}: key {key!r} is given twice")
        if "\0" in value:
            raise ValueError(f"line {n}: NUL byte in the value")
        keys[key] = value.strip()
    if not keys:
        raise ValueError("the profile sets nothing")
    return keys


class SlicingProfiles:
    def __init__(self, store: Store, root: Path) -> None:
        self.store = store
        self.root = root
        # The database is the record; the files are rebuilt from it on every start.
        for row in self.store.all("SELECT kind, name, body FROM slicing_profiles"):
            self._write(row["kind"], row["name"], row["body"])

    def _write(self, kind: str, name: str, text: str) -> None:
        path = self.root / kind / f"{name}.ini"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def list(self) -> list[SlicingProfile]:
        shipped = [SlicingProfile(id=f"{k}/{n}", kind=k, name=n, source="shipped") for k in KINDS
                   for n in profile_names(k)]
        uploaded = [SlicingProfile(id=f"{r['kind']}/{r['name']}", kind=r["kind"], name=r["name"], source="uploaded",
                                   keys=len(parse_ini(r["body"])), created_at=r["created_at"])
                    for r in self.store.all("SELECT * FROM slicing_profiles ORDER BY kind, name")]
        return shipped + uploaded

    def exists(self, kind: str, name: str) -> bool:
        return name in profile_names(kind) or self.store.one(
            "SELECT 1 FROM slicing_profiles WHERE kind = ? AND name = ?", (kind, name)) is not None

    def names(self, kind: str) -> list[str]:
        stored = [r["name"] for r in self.store.all("SELECT name FROM slicing_profiles WHERE kind = ?", (kind,))]
        return sorted({*profile_names(kind), *stored})

    def add(self, up: ProfileUpload) -> SlicingProfile:
        try:
            keys = parse_ini(up.ini)
        except ValueError as exc:
            raise ApiProblem(422, "Invalid profile", str(exc)) from None
        if self.exists(up.kind, up.name):
            raise ApiProblem(409, "Profile exists", f"{up.kind} profile {up.name!r} exists and profiles are "
                                                     "immutable: upload it under a new name")
        now = utcnow()
        self.store.db.execute("INSERT INTO slicing_profiles (kind, name, body, created_at) VALUES (?, ?, ?, ?)",
                              (up.kind, up.name, up.ini, now))
        self._write(up.kind, up.name, up.ini)
        log.info("slicing_profile_added", kind=up.kind, name=up.name, keys=len(keys))
        return SlicingProfile(id=f"{up.kind}/{up.name}", kind=up.kind, name=up.name, source="uploaded",
                              keys=len(keys), created_at=now)

    # ------------------------------------------------------------------ HTTP

    def ops(self) -> list[Op]:
        async def list_profiles(request: web.Request) -> web.Response:
            return respond(ProfileList(items=self.list()))

        async def add_profile(request: web.Request) -> web.Response:
            return respond(self.add(await body(request, ProfileUpload)), 201)

        return [
            Op("GET", "/api/v1/slicing-profiles", list_profiles, response=ProfileList, tags=("slicing",),
               summary="Slicing profile layers, shipped and uploaded"),
            Op("POST", "/api/v1/slicing-profiles", add_profile, body=ProfileUpload, response=SlicingProfile,
               status=201, tags=("slicing",), summary="Upload a printer, filament or quality layer (INI)"),
        ]
