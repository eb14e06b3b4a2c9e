"""The G-code console over the API: lines reach the node as SendGcode, the
firmware's replies come back into the device's console and the live stream."""

from __future__ import annotations

import aiohttp
import pytest

from protocol.messages import CommandAck, ConsoleOutput, DeviceError, SendGcode

from .authkit import bearer
from .hubkit import Farm, Http, ScriptedNode, eventually, farm  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


async def console(http: Http, ref: str) -> list[tuple[str, str]]:
    status, body = await http.call("GET", f"/api/v1/devices/{ref}/console")
    assert status == 200, body
    return [(e["direction"], e["text"]) for e in body["lines"]]


async def answer(node: ScriptedNode, replies: list[str], status: str = "done", reason: str = "") -> SendGcode:
    cmd = await node.command()
    assert isinstance(cmd, SendGcode)
    if replies:
        await node.event(ConsoleOutput(device=cmd.device, command_id=cmd.command_id, lines=replies))
    await node.event(CommandAck(command_id=cmd.command_id, status=status, reason=reason))
    return cmd


async def test_sent_lines_and_the_firmwares_replies_fill_the_console(farm: Farm) -> None:
    hub = await farm.hub()
    node = await farm.node("mk4")
    http = farm.http(hub, "operator")
    ref = f"{node.id}/mk4"

    status, body = await http.call("POST", f"/api/v1/devices/{ref}/gcode", json={"lines": ["M105", "M114"]})
    assert status == 202, body
    cmd = await answer(node, ["ok T:210.0 /210.0 B:60.0 /60.0", "X:0.00 Y:0.00 Z:0.00 E:0.00", "ok"])
    assert cmd.command_id == body["command_id"] and cmd.lines == ["M105", "M114"]

    lines = await eventually(lambda: _with_reply(http, ref), "the replies in the console")
    assert lines == [("sent", "M105"), ("sent", "M114"), ("received", "ok T:210.0 /210.0 B:60.0 /60.0"),
                     ("received", "X:0.00 Y:0.00 Z:0.00 E:0.00"), ("received", "ok")]
    assert hub.outbox.get(cmd.command_id)["ack_status"] == "done"


async def _with_reply(http: Http, ref: str) -> list[tuple[str, str]] | None:
    lines = await console(http, ref)
    return lines if lines and lines[-1] == ("received", "ok") else None


async def test_a_refusal_shows_in_the_console(farm: Farm) -> None:
    hub = await farm.hub()
    node = await farm.node("mk4")
    http = farm.http(hub)
    ref = f"{node.id}/mk4"
    assert (await http.call("POST", f"/api/v1/devices/{ref}/gcode", json={"lines": ["G28"]}))[0] == 202
    await answer(node, [], status="rejected", reason="device mk4 is printing")

    async def refused() -> bool:
        return ("status", "rejected: device mk4 is printing") in await console(http, ref)
    await eventually(refused, "the refusal in the console")


async def test_a_line_of_a_job_the_firmware_refused_shows_in_the_console_in_its_words(farm: Farm) -> None:
    """Klippy refuses a job's line it does not know (``// Unknown command:"FOO"``): the job goes on."""
    hub = await farm.hub()
    node = await farm.node("voron")
    http = farm.http(hub)
    ref = f"{node.id}/voron"
    await node.event(DeviceError(device="voron", job_id="7", command="FOO X1",
                                 message='Unknown command:"FOO"'))

    async def refused() -> bool:
        return ("status", 'refused (job 7): FOO X1: Unknown command:"FOO"') in await console(http, ref)
    await eventually(refused, "the refused line in the console")


async def test_replies_arrive_on_the_live_stream(farm: Farm) -> None:
    hub = await farm.hub()
    node = await farm.node("mk4")
    ref = f"{node.id}/mk4"
    async with aiohttp.ClientSession(headers=bearer("operator")) as s:
        async with s.ws_connect(f"{hub.http_url}/api/v1/live") as ws:
            await ws.send_json({"subscribe": [f"console:{ref}"]})
            assert (await ws.receive_json(timeout=10))["subscribed"] == [f"console:{ref}"]
            async with s.post(f"{hub.http_url}/api/v1/devices/{ref}/gcode", json={"lines": ["M105"]}) as r:
                assert r.status == 202
            await answer(node, ["ok T:21.0 /0.0"])
            seen: list[tuple[str, str]] = []
            while ("received", "ok T:21.0 /0.0") not in seen:
                for msg in await ws.receive_json(timeout=10):
                    assert msg["topic"] == "console" and msg["key"] == ref
                    seen += [(e["direction"], e["text"]) for e in msg["data"]]
            assert seen == [("sent", "M105"), ("received", "ok T:21.0 /0.0")]


async def test_bad_lines_unknown_or_offline_devices_and_viewers_are_refused(farm: Farm) -> None:
    hub = await farm.hub()
    node = await farm.node("mk4")
    http = farm.http(hub)
    ref = f"{node.id}/mk4"
    for bad in ({"lines": []}, {"lines": ["G1 X1*12"]}, {"lines": ["M117 " + "x" * 100]}, {"lines": ["M117 é"]},
                {"lines": ["G28"] * 51}, {"line": "G28"}):
        status, body = await http.call("POST", f"/api/v1/devices/{ref}/gcode", json=bad)
        assert status == 422 and body["title"] == "Invalid G-code", (bad, body)
    assert (await http.call("POST", f"/api/v1/devices/{node.id}/nope/gcode", json={"lines": ["G28"]}))[0] == 404
    viewer = farm.http(hub, "viewer")
    assert (await viewer.call("POST", f"/api/v1/devices/{ref}/gcode", json={"lines": ["G28"]}))[0] == 403
    assert (await viewer.call("GET", f"/api/v1/devices/{ref}/console"))[0] == 200
    assert await console(http, ref) == [], "nothing refused reached the console"

    await node.die()
    await eventually(lambda: _offline(http, ref), "the device to go offline")
    status, body = await http.call("POST", f"/api/v1/devices/{ref}/gcode", json={"lines": ["G28"]})
    assert status == 409 and "offline" in body["detail"]
    assert hub.outbox.pending() == [], "a refused console line is never queued for later"


async def _offline(http: Http, ref: str) -> bool:
    return not (await http.devices())[ref]["online"]


async def test_an_unanswered_line_is_not_sent_again_later(farm: Farm) -> None:
    hub = await farm.hub()
    node = await farm.node("mk4")
    hub.surface.console.ttl_s = 0.2
    http = farm.http(hub)
    ref = f"{node.id}/mk4"
    status, body = await http.call("POST", f"/api/v1/devices/{ref}/gcode", json={"lines": ["G28"]})
    assert status == 202
    await node.command()  # received, never answered

    async def expired() -> bool:
        return any(d == "status" and "not sent again" in t for d, t in await console(http, ref))
    await eventually(expired, "the unanswered line to expire")
    assert body["command_id"] not in [o.command_id for o in hub.outbox.pending()]


async def test_the_console_is_in_the_openapi_document(farm: Farm) -> None:
    hub = await farm.hub()
    doc = (await farm.http(hub).call("GET", "/api/v1/openapi.json"))[1]
    send = doc["paths"]["/api/v1/devices/{node}/{device}/gcode"]["post"]
    assert send["x-roles"] == ["admin", "operator"] and "202" in send["responses"]
    assert "ConsoleLog" in doc["components"]["schemas"]
