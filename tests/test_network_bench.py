"""How bench.network_printers measures: the staleness of stamped readings, the dead hosts, the printer mix."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from bench.network_world import BedStamps, DeadHosts, bed_step
from farmhand.sim.network_fleet import parse_mix, split


def test_a_reading_shown_late_counts_from_when_the_printer_first_reported_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("bench.network_world.time.time", lambda: clock[0])
    stamps = BedStamps()
    stamps.measure()
    first = stamps.read("p1")
    clock[0] += 0.5
    assert stamps.read("p1") == first, "the reading changes at most once a step"
    clock[0] += 0.5
    second = stamps.read("p1")
    assert second != first
    stamps.shown("p1", second, now=clock[0] + 0.2)  # the hub shows the newer one: both reports are done
    assert sorted(round(s, 3) for s in stamps.staleness) == [0.2, 1.2]
    stamps.shown("p1", first, now=clock[0] + 5)  # an older reading shown again changes nothing
    assert len(stamps.staleness) == 2
    assert stamps.summary()["lost"] == 0


def test_a_reading_the_hub_never_shows_is_counted_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("bench.network_world.time.time", lambda: clock[0])
    stamps = BedStamps()
    stamps.measure()
    stamps.read("p1")
    clock[0] += 10
    summary = stamps.summary()
    assert summary["lost"] == 1 and summary["shown"] == 0 and summary["staleness_p99_s"] is None


def test_readings_survive_the_drivers_rounding_to_a_tenth() -> None:
    stamps = BedStamps()
    stamps.measure()
    value = stamps.read("p1")
    assert bed_step(round(value, 1)) == bed_step(value) == bed_step(float(f"{value:.2f}"))


async def test_a_dead_host_refuses_or_never_answers() -> None:
    dead = DeadHosts()
    try:
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", dead.closed_port())
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", dead.black_hole()), 1.0)
        assert time.monotonic() - started >= 0.9, "a black hole neither accepts nor refuses"
    finally:
        dead.close()


def test_dead_printers_are_configured_like_live_ones_at_dead_addresses() -> None:
    dead = DeadHosts()
    try:
        like = {"prusalink": {"id": "p", "driver": "prusalink", "url": "http://127.0.0.1:1", "username": "u",
                              "password": "x"},
                "bambu": {"id": "b", "driver": "bambu", "url": "mqtts://127.0.0.1:2?ftps_port=3", "serial": "S",
                          "access_code": "1", "ca_file": "/c"}}
        configs = dead.configs(4, ["bambu", "prusalink"], like)
        assert [c["id"] for c in configs] == ["dead-bambu-0", "dead-prusalink-1", "dead-bambu-2", "dead-prusalink-3"]
        for c in configs:
            port = int(c["url"].split(":")[2].split("?")[0])
            with socket.socket() as s, pytest.raises(OSError):
                s.settimeout(0.3)
                s.connect(("127.0.0.1", port))
        assert configs[0]["url"].endswith(f"?ftps_port={configs[0]['url'].split(':')[2].split('?')[0]}")
        assert len({c.get("serial") for c in configs if c["driver"] == "bambu"}) == 2
    finally:
        dead.close()


def test_the_mix_splits_printers_by_share_into_whole_counts() -> None:
    assert split(200, parse_mix("prusalink=1,bambu=1,octoprint=1,moonraker=1")) == \
        {"prusalink": 50, "bambu": 50, "octoprint": 50, "moonraker": 50}
    assert split(10, parse_mix("prusalink=2,bambu")) == {"prusalink": 7, "bambu": 3}
    assert sum(split(7, parse_mix("prusalink,bambu,moonraker")).values()) == 7
    with pytest.raises(ValueError, match="unknown network printer kind 'marlin'"):
        parse_mix("marlin=1")
    with pytest.raises(ValueError, match="no printers"):
        parse_mix("bambu=0")
