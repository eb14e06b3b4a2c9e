"""Nodes and devices as their agents last described them, plus live telemetry.

Birth and death messages and device snapshots are persisted; telemetry and
host metrics are frequent and lossy, so only the latest reading is kept in
memory and a sample of telemetry is written to history at most once per
``history_interval_s`` per device.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from pydantic_core import to_json
from sqlite_utils import Database

from protocol.messages import DeviceError, DeviceStatus, HostMetrics, NodeState, Telemetry

from hub.store import Store, dumps, timestamp, utcnow

from .schemas import Device, DeviceSpool, Node

log = structlog.get_logger("farmhand.hub.fleet")

DEVICE_ROWS = "SELECT d.*, COALESCE(n.online, 0) AS node_online FROM devices d LEFT JOIN nodes n ON n.id = d.node"
# The spool loaded on each device (at most one: spools_loaded is unique per device). The shop writes
# spools, so they are read at each listing, not kept.
LOADED_SPOOLS = (
    "SELECT s.node, s.device, s.id AS spool_id, f.material AS spool_material, f.name AS spool_filament,"
    " f.color_hex AS spool_color, s.initial_weight - s.used_weight AS spool_left"
    " FROM spools s LEFT JOIN filaments f ON f.id = s.filament_id WHERE s.node IS NOT NULL"
)
Key = tuple[str, str]


@dataclass(frozen=True)
class _Entry:
    """What a device listing filters on, kept per device."""

    key: Key
    node: str
    state: str
    online: bool
    kind: str | None

# A device's JSON is written in three parts: what telemetry changes (progress, temperatures: adjacent in
# Device) and what is around them.
_FIELDS = list(Device.model_fields)
_HEAD, _TAIL = _FIELDS[:_FIELDS.index("progress")], _FIELDS[_FIELDS.index("temperatures") + 1:]
assert _FIELDS[_FIELDS.index("progress") + 1] == "temperatures"
_BETWEEN = b',"temperatures":'

HISTORY_BATCH = 500
HISTORY_BATCH_S = 1.0


class FleetState:
    def __init__(self, store: Store, history_interval_s: float) -> None:
        self.store = store
        self.history_interval_s = history_interval_s
        self._telemetry: dict[tuple[str, str], tuple[float, Telemetry]] = {}  # (when it arrived: epoch s, reading)
        self._history_at: dict[tuple[str, str], float] = {}
        self._metrics: dict[str, HostMetrics] = {}
        # History samples go in batches, one commit each (issue 19: at 5,000 devices a commit per
        # sample was 5,000 fsyncs a round and held every reading behind it). Lossy like the telemetry.
        self._history_rows: list[tuple[str, str, str, str, float | None]] = []
        self._history_written = time.monotonic()
        # Every device's row, kept in step with each write here, so a listing of thousands reads no SQL.
        self._rows: dict[Key, dict[str, Any]] | None = None
        self._entries: list[_Entry] | None = None  # sorted by (node, id); None: rebuild
        self.revision = 0  # a counter of changes; a client asks for the devices changed since one
        self._changed: dict[Key, int] = {}
        self._made: dict[Key, tuple[tuple[Any, ...], Device]] = {}
        self._json_made: dict[Key, tuple[tuple[Any, ...], bytes]] = {}
        self._frames: dict[Key, tuple[dict[str, Any], tuple[Any, ...] | None, bytes, bytes]] = {}

    # ------------------------------------------------------------------ updates

    def node_state(self, node: str, body: NodeState) -> bool:
        """Returns True when the node came online (the scheduler may have work for it)."""
        now = utcnow()
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO nodes (id, online, agent_version, hostname, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET online = excluded.online, updated_at = excluded.updated_at,"
                " agent_version = CASE WHEN excluded.online THEN excluded.agent_version ELSE agent_version END,"
                " hostname = CASE WHEN excluded.online THEN excluded.hostname ELSE hostname END",
                (node, int(body.online), body.agent_version, body.hostname, now),
            )
            # A death message lists no devices: the node's devices are offline
            # through nodes.online, and whatever they were doing carries on.
            if body.online:
                db.execute("UPDATE devices SET listed = 0 WHERE node = ?", (node,))
                for info in body.devices:
                    db.execute(
                        "INSERT INTO devices (node, id, kind, model, firmware, capabilities, render, listed,"
                        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?) ON CONFLICT (node, id) DO UPDATE SET"
                        " kind = excluded.kind, model = excluded.model, firmware = excluded.firmware,"
                        " capabilities = excluded.capabilities, render = excluded.render, listed = 1",
                        (node, info.id, info.kind, info.model, info.firmware, dumps(info.capabilities),
                         info.render.model_dump_json() if info.render else None, now),
                    )
        self._refresh("d.node = ?", (node,))
        log.info("node_state", node=node, online=body.online, devices=[d.id for d in body.devices])
        return body.online

    def knows(self, node: str, device: str) -> bool:
        """Whether the node's last birth listed this device."""
        return self.store.db.execute("SELECT 1 FROM devices WHERE node = ? AND id = ? AND listed = 1",
                                     (node, device)).fetchone() is not None

    def device_status(self, node: str, body: DeviceStatus) -> bool:
        """Returns True when the device is idle (the scheduler may have work for it)."""
        temps = {k: v.model_dump() for k, v in body.temperatures.items()}
        self.store.db.execute(
            "INSERT INTO devices (node, id, state, job_id, progress, temperatures, error, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (node, id) DO UPDATE SET state = excluded.state,"
            " job_id = excluded.job_id, progress = excluded.progress, temperatures = excluded.temperatures,"
            " error = excluded.error, updated_at = excluded.updated_at",
            (node, body.device, body.state.value, body.job_id, body.progress, dumps(temps), body.error, utcnow()),
        )
        self._refresh("d.node = ? AND d.id = ?", (node, body.device))
        return body.state.value == "idle"

    def device_error(self, db: Database, node: str, body: DeviceError) -> None:
        db.execute("UPDATE devices SET error = ? WHERE node = ? AND id = ?", (body.message, node, body.device))
        self._refresh("d.node = ? AND d.id = ?", (node, body.device))
        log.warning("device_error", node=node, device=body.device, message=body.message)

    def telemetry(self, node: str, sent: datetime, body: Telemetry) -> None:
        key = (node, body.device)
        # The hub's clock, not the agent's, so it compares with the snapshot's updated_at.
        self._telemetry[key] = (time.time(), body)
        self._touch(key)
        now = time.monotonic()
        last = self._history_at.get(key)
        if last is not None and now - last < self.history_interval_s:
            return
        self._history_at[key] = now
        self._history_rows.append(
            (node, body.device, timestamp(sent), dumps({k: v.model_dump() for k, v in body.temperatures.items()}),
             body.progress))
        if len(self._history_rows) >= HISTORY_BATCH or now - self._history_written >= HISTORY_BATCH_S:
            rows, self._history_rows, self._history_written = self._history_rows, [], now
            with self.store.transaction() as db:
                db.conn.executemany(
                    "INSERT INTO telemetry (node, device, ts, temperatures, progress) VALUES (?, ?, ?, ?, ?)", rows)

    def latest_telemetry(self, node: str, device: str) -> Telemetry | None:
        """The last reading in memory (for the farm grid's feed, hub/tile_feed.py)."""
        held = self._telemetry.get((node, device))
        return held[1] if held is not None else None

    def metrics(self, node: str, body: HostMetrics) -> None:
        self._metrics[node] = body

    def heard_at(self, node: str, device: str) -> str | None:
        """When the device's last telemetry arrived (hub clock), since this hub started; alerting reads it."""
        live = self._telemetry.get((node, device))
        return timestamp(datetime.fromtimestamp(live[0], UTC)) if live else None
    def host_metrics(self) -> dict[str, HostMetrics]:
        """Each node's last host metrics (its outbox depth among them)."""
        return dict(self._metrics)

    # ------------------------------------------------------------------ views

    def nodes(self) -> list[Node]:
        devices: dict[str, list[str]] = {}
        for row in self.store.db.execute("SELECT node, id FROM devices WHERE listed = 1 ORDER BY node, id"):
            devices.setdefault(row[0], []).append(row[1])
        return [
            Node(id=r["id"], online=bool(r["online"]), agent_version=r["agent_version"], hostname=r["hostname"],
                 updated_at=r["updated_at"], devices=devices.get(r["id"], []), metrics=self._metrics.get(r["id"]))
            for r in self.store.all("SELECT * FROM nodes ORDER BY id")
        ]

    def devices(self) -> list[Device]:
        spools = self._spools()
        return [self._device(self._all_rows()[e.key], spools) for e in self.entries()]

    def device(self, node: str, device_id: str) -> Device | None:
        row = self._all_rows().get((node, device_id))
        return self._device(row, self._spools(node, device_id)) if row else None

    def items_json(self, entries: list[_Entry]) -> bytes:
        """The devices of these entries (one page of a listing) as a JSON array of ``Device``; each device's
        JSON is kept until it or its spool changes, and is made from its fields without a model (at 5,000
        printers reporting every second a listing remade 5,000 models, a quarter second of the hub's loop)."""
        spools = self._spools() if entries else {}
        rows = self._all_rows()
        return b"[" + b",".join([self._json(rows[e.key], spools) for e in entries]) + b"]"

    def entries(self, since: int | None = None) -> list[_Entry]:
        """Every device's listing entry by (node, id); ``since``: only those changed after that revision."""
        if self._entries is None:
            self._entries = [_entry(r) for _, r in sorted(self._all_rows().items())]
        if since is None:
            return self._entries
        return [e for e in self._entries if self._changed.get(e.key, 0) > since]

    # ------------------------------------------------------------------ the kept rows

    def _all_rows(self) -> dict[Key, dict[str, Any]]:
        if self._rows is None:
            self._rows = {(r["node"], r["id"]): _kept(r) for r in self.store.all(DEVICE_ROWS)}
        return self._rows

    def _refresh(self, where: str, params: tuple[Any, ...]) -> None:
        """Read rows just written again (inside the writer's transaction, so they are the new ones)."""
        rows = self._all_rows()
        for r in self.store.all(f"{DEVICE_ROWS} WHERE {where}", params):
            key = (r["node"], r["id"])
            rows[key] = _kept(r)
            self._touch(key)
        self._entries = None

    def _touch(self, key: Key) -> None:
        self.revision += 1
        self._changed[key] = self.revision

    def _spools(self, node: str | None = None, device: str | None = None) -> dict[Key, dict[str, Any]]:
        sql, params = (LOADED_SPOOLS, ()) if node is None else (LOADED_SPOOLS + " AND s.node = ? AND s.device = ?",
                                                              (node, device))
        return {(r["node"], r["device"]): r for r in self.store.all(sql, params)}

    def _device(self, r: dict[str, Any], spools: dict[Key, dict[str, Any]]) -> Device:
        """The device's model, made again only when it or its spool changed since it was last made."""
        key, spool = (r["node"], r["id"]), spools.get((r["node"], r["id"]))
        stamp = self._stamp(key, spool)
        made = self._made.get(key)
        if made is None or made[0] != stamp:
            made = self._made[key] = (stamp, Device(**self._fields(r, spool)))
        return made[1]

    def _json(self, r: dict[str, Any], spools: dict[Key, dict[str, Any]]) -> bytes:
        key, spool = (r["node"], r["id"]), spools.get((r["node"], r["id"]))
        stamp = self._stamp(key, spool)
        held = self._json_made.get(key)
        if held is None or held[0] != stamp:
            head, tail = self._frame(key, r, spool, stamp[1])
            progress, temperatures = self._live(r)
            held = self._json_made[key] = (stamp, head + to_json(progress) + _BETWEEN + to_json(temperatures) + tail)
        return held[1]

    def _frame(self, key: Key, r: dict[str, Any], spool: dict[str, Any] | None,
               spool_values: tuple[Any, ...] | None) -> tuple[bytes, bytes]:
        """The device's JSON before its progress and after its temperatures, which telemetry changes every
        second: made again only when its row or its spool changes."""
        held = self._frames.get(key)
        if held is None or held[0] is not r or held[1] != spool_values:
            fields = self._fields(r, spool)
            head = to_json({k: fields[k] for k in _HEAD})[:-1] + b',"progress":'
            held = self._frames[key] = (r, spool_values, head, b"," + to_json({k: fields[k] for k in _TAIL})[1:])
        return held[2], held[3]

    def _stamp(self, key: Key, spool: dict[str, Any] | None) -> tuple[Any, ...]:
        return self._changed.get(key, 0), tuple(spool.values()) if spool else None

    def _live(self, r: dict[str, Any]) -> tuple[float | None, dict[str, Any]]:
        """The device's progress and temperatures: its last telemetry's where that came after its snapshot."""
        live = self._telemetry.get((r["node"], r["id"]))
        if live is None or live[0] < r["updated_s"]:
            return r["progress"], r["temperatures"]
        # Heater models as they are: no second validation.
        return (live[1].progress if live[1].progress is not None else r["progress"],
                dict(live[1].temperatures) or r["temperatures"])

    def _fields(self, r: dict[str, Any], spool: dict[str, Any] | None) -> dict[str, Any]:
        """A ``Device``'s fields, in its order and its JSON's types (``items_json`` writes them as they are)."""
        progress, temperatures = self._live(r)
        return {
            "ref": f"{r['node']}/{r['id']}", "node": r["node"], "id": r["id"],
            "online": bool(r["node_online"] and r["listed"]), "kind": r["kind"], "model": r["model"],
            "firmware": r["firmware"], "capabilities": r["capabilities"], "state": r["state"],
            "job_id": r["job_id"], "progress": progress, "temperatures": temperatures, "error": r["error"],
            "updated_at": r["updated"], "material": _material(spool),
        }


def _kept(r: dict[str, Any]) -> dict[str, Any]:
    """A device's row as it is kept: its JSON columns read once, not at each listing."""
    r["temperatures"] = json.loads(r["temperatures"])
    r["capabilities"] = json.loads(r["capabilities"])
    r["updated"] = datetime.fromisoformat(r["updated_at"])
    r["updated_s"] = r["updated"].timestamp()  # compares with the time telemetry arrived
    return r


def _entry(r: dict[str, Any]) -> _Entry:
    return _Entry((r["node"], r["id"]), r["node"], r["state"], bool(r["node_online"] and r["listed"]), r["kind"])


def _material(r: dict[str, Any] | None) -> DeviceSpool | None:
    if r is None:
        return None
    colour = r["spool_color"]
    return DeviceSpool(spool_id=r["spool_id"], material=r["spool_material"], name=r["spool_filament"],
                          color_hex=f"#{colour.lstrip('#').lower()}" if colour else None,
                          remaining_grams=round(max(r["spool_left"], 0.0), 1))
