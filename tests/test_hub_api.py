"""The hub's HTTP API on an ephemeral port: files, jobs, errors as problem details."""

from __future__ import annotations

import asyncio
import hashlib
import json

import aiohttp
import pytest

from .authkit import bearer
from .hubkit import Farm, farm  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

GCODE = b"; a tiny part\nG28\nG1 X10 Y10 F3000\nM104 S0\n"


async def test_upload_is_stored_by_hash_and_idempotent(farm: Farm) -> None:
    hub = await farm.hub()
    http = farm.http(hub)
    sha = hashlib.sha256(GCODE).hexdigest()

    status, first = await http.call("POST", "/api/v1/files", params={"name": "part.gcode"}, data=GCODE)
    assert (status, first["sha256"], first["size"], first["name"]) == (201, sha, len(GCODE), "part.gcode")
    status, again = await http.call("POST", "/api/v1/files", params={"name": "copy.gcode"}, data=GCODE)
    assert status == 200 and again["sha256"] == sha and again["name"] == "part.gcode"

    assert (hub.config.data_dir / "files" / sha[:2] / sha).read_bytes() == GCODE
    status, listing = await http.call("GET", "/api/v1/files")
    assert [f["sha256"] for f in listing["items"]] == [sha]
    status, data = await http.call("GET", f"/api/v1/files/{sha}")
    assert (status, data) == (200, GCODE)


async def test_multipart_upload(farm: Farm) -> None:
    hub = await farm.hub()
    http = farm.http(hub)
    form = aiohttp.FormData()
    form.add_field("file", GCODE, filename="benchy.gcode", content_type="text/x-gcode")
    status, body = await http.call("POST", "/api/v1/files", data=form)
    assert status == 201 and body["name"] == "benchy.gcode" and body["sha256"] == hashlib.sha256(GCODE).hexdigest()


async def test_upload_over_the_limit_is_refused_with_the_limit_and_leaves_nothing(farm: Farm) -> None:
    hub = await farm.hub(max_upload_mb=0.01)  # 10 KiB
    http = farm.http(hub)
    big = b"G1 X1 Y1\n" * 2000  # 18 KB

    status, problem = await http.call("POST", "/api/v1/files", params={"name": "big.gcode"}, data=big)
    assert status == 413
    assert "0.01 MB" in problem["detail"] and problem["status"] == 413

    async def chunked():  # no Content-Length: refused while streaming
        for i in range(0, len(big), 4096):
            yield big[i:i + 4096]

    status, problem = await http.call("POST", "/api/v1/files", params={"name": "big.gcode"}, data=chunked())
    assert status == 413 and "0.01 MB" in problem["detail"]
    assert (await http.call("GET", "/api/v1/files"))[1]["items"] == []
    assert list((hub.config.data_dir / "files" / "incoming").iterdir()) == []


@pytest.mark.parametrize(("data", "reason"), [
    (b"G28\nG1 X1\0\0\0\n", "NUL byte at offset 9"),
    (b"G28\n; caf\xe9\n", "undecodable byte at offset 9"),
])
async def test_gcode_that_is_not_text_is_refused_with_the_reason(farm: Farm, data: bytes, reason: str) -> None:
    hub = await farm.hub()
    http = farm.http(hub)
    async with http.session.post(f"{hub.http_url}/api/v1/files", params={"name": "bad.gcode"}, data=data) as r:
        assert r.status == 422
        assert r.content_type == "application/problem+json"
        problem = await r.json(content_type=None)
    assert reason in problem["detail"]
    assert set(problem) == {"type", "title", "status", "detail"}
    assert (await http.call("GET", "/api/v1/files"))[1]["items"] == []


async def test_job_create_list_get_cancel(farm: Farm) -> None:
    hub = await farm.hub()
    http = farm.http(hub)
    sha = await http.upload(GCODE, "part.gcode")

    job = await http.submit(sha)
    assert job["state"] == "queued" and job["name"] == "part.gcode" and job["device"] is None
    assert job["attempt"] == 0 and job["created_at"].endswith("Z")
    other = await http.submit(sha, name="second", priority=3)

    status, listing = await http.call("GET", "/api/v1/jobs")
    assert [j["id"] for j in listing["items"]] == [job["id"], other["id"]]
    assert await http.job(other["id"]) == other

    status, cancelled = await http.call("POST", f"/api/v1/jobs/{job['id']}/cancel")
    assert status == 200 and cancelled["state"] == "cancelled" and cancelled["finished_at"]
    status, problem = await http.call("POST", f"/api/v1/jobs/{job['id']}/cancel")
    assert status == 409 and "already cancelled" in problem["detail"]

    status, queued = await http.call("GET", "/api/v1/jobs", params={"state": "queued"})
    assert [j["id"] for j in queued["items"]] == [other["id"]]
    status, problem = await http.call("GET", "/api/v1/jobs", params={"state": "lost"})
    assert status == 422 and "queued" in problem["detail"]


async def test_job_requests_that_cannot_be_met_say_why(farm: Farm) -> None:
    hub = await farm.hub()
    http = farm.http(hub)
    sha = await http.upload(GCODE)

    status, problem = await http.call("POST", "/api/v1/jobs", json={"file_sha256": "0" * 64})
    assert status == 422 and "upload it first" in problem["detail"]
    status, problem = await http.call("POST", "/api/v1/jobs", json={"file_sha256": sha, "device": "nowhere/mk3"})
    assert status == 422 and "unknown device 'nowhere/mk3'" in problem["detail"]
    status, problem = await http.call("POST", "/api/v1/jobs", json={"file_sha256": sha, "colour": "red"})
    assert status == 422 and "colour" in problem["detail"]
    status, problem = await http.call("POST", "/api/v1/jobs", data=b"{not json")
    assert status == 422 and problem["title"] == "Invalid job"
    status, problem = await http.call("GET", "/api/v1/jobs/999")
    assert status == 404 and problem["detail"] == "no job 999"
    assert (await http.call("GET", "/api/v1/jobs"))[1]["items"] == []


async def test_a_retried_submission_with_the_same_idempotency_key_queues_one_job(farm: Farm) -> None:
    hub = await farm.hub()
    http = farm.http(hub)
    sha = await http.upload(GCODE)
    headers = {"Idempotency-Key": "order-17"}
    status, first = await http.call("POST", "/api/v1/jobs", json={"file_sha256": sha}, headers=headers)
    status2, second = await http.call("POST", "/api/v1/jobs", json={"file_sha256": sha}, headers=headers)
    assert (status, status2) == (201, 200) and first["id"] == second["id"]
    assert len((await http.call("GET", "/api/v1/jobs"))[1]["items"]) == 1


async def test_health_reports_the_broker_connection_and_counters(farm: Farm) -> None:
    hub = await farm.hub()
    health = await farm.http(hub).health()
    assert health["status"] == "ok" and health["mqtt_connected"] is True
    assert health["schema_version"] >= 1
    assert {"ingest", "requests", "commands", "scheduler"} <= set(health["counters"])


async def test_a_broken_multipart_body_and_a_non_ascii_id_are_client_errors(farm: Farm) -> None:
    hub = await farm.hub()
    http = farm.http(hub)
    broken = b"--xx\r\nContent-Disposition form-data\r\n\r\nG28\r\n--xx--\r\n"  # header line without a colon
    status, problem = await http.call("POST", "/api/v1/files", data=broken,
                                      headers={"Content-Type": "multipart/form-data; boundary=xx"})
    assert status == 400 and problem["title"] == "Malformed request"
    status, problem = await http.call("GET", "/api/v1/jobs/³")
    assert status == 404 and "ids are integers" in problem["detail"]


@pytest.mark.parametrize("name", ["part\x00.gcode", "part\n.gcode", "tra\u202ekcab.gcode"])
async def test_a_file_name_with_a_hidden_character_is_refused_with_the_reason(farm: Farm, name: str) -> None:
    hub = await farm.hub()
    http = farm.http(hub)
    status, problem = await http.call("POST", "/api/v1/files", params={"name": name}, data=GCODE)
    assert status == 422 and "control character" in problem["detail"]
    assert (await http.call("GET", "/api/v1/files"))[1]["items"] == []


async def test_any_stored_name_downloads_with_an_rfc_6266_disposition(farm: Farm) -> None:
    hub = await farm.hub()
    status, stored = await farm.http(hub).call("POST", "/api/v1/files", params={"name": 'Zahnrad "groß".gcode'},
                                               data=GCODE)
    assert status == 201

    async def disposition() -> str:
        async with aiohttp.ClientSession(headers=bearer("admin")) as client, \
                client.get(f"{hub.http_url}/api/v1/files/{stored['sha256']}") as r:
            assert r.status == 200 and await r.read() == GCODE
            return r.headers["Content-Disposition"]

    assert await disposition() == \
        "attachment; filename=\"Zahnrad _gro__.gcode\"; filename*=UTF-8''Zahnrad%20%22gro%C3%9F%22.gcode"
    # A name stored before control characters were refused: the download used to close the connection.
    assert hub.store is not None
    hub.store.db.execute("UPDATE files SET name = ? WHERE sha256 = ?", ("old\x00name.gcode", stored["sha256"]))
    assert await disposition() == "attachment; filename=\"old_name.gcode\"; filename*=UTF-8''old%00name.gcode"


@pytest.mark.parametrize("request_bytes,detail", [
    (b"GET /api/v1/jobs?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", "Got more than 8190 bytes"),
    (b"GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\x00b\r\n\r\n", "Invalid header value char"),
])
async def test_what_the_http_parser_refuses_is_answered_in_problem_json(farm: Farm, request_bytes: bytes,
                                                                        detail: str) -> None:
    hub = await farm.hub()
    host, port = hub.http_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request_bytes)
    await writer.drain()
    head, _, body = (await asyncio.wait_for(reader.read(), 10)).partition(b"\r\n\r\n")
    writer.close()
    assert head.split(b" ", 2)[1] == b"400", head
    assert b"Content-Type: application/problem+json" in head
    problem = json.loads(body)
    assert problem["status"] == 400 and problem["title"] == "Bad Request" and detail in problem["detail"]
