"""The agent's HTTP and WebSocket clients (agent/net) against aiohttp's server: what the drivers rely on.

Kept connections, streamed and multipart uploads, timeouts and refusals, a POST never sent twice, and a
WebSocket's messages, pings, closes and a peer gone silent."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import WSMsgType, web

from agent.net import (ConnectFailed, HttpClient, InvalidUrl, Multipart, RequestFailed, Timeout, WebSocket,
                       WebSocketClosed, WebSocketRejected)

@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Serves the given routes on 127.0.0.1; returns the base URL."""
    runners: list[web.AppRunner] = []

    async def start(routes: list[web.RouteDef], **kw: object) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes(routes)
        runner = web.AppRunner(app, **kw)  # type: ignore[arg-type]
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_requests_share_a_kept_connection_and_read_json_and_headers(serve) -> None:
    async def status(request: web.Request) -> web.Response:
        return web.json_response({"state": "idle", "ua": request.headers["User-Agent"]},
                                 headers={"ETag": '"v1"', "X-Twice": "a"})

    base = await serve([web.get("/api/status", status)])
    http = HttpClient(base, headers={"X-Api-Key": "k"})
    for _ in range(3):
        async with http.get("/api/status") as response:
            assert response.status == 200
            assert response.headers["etag"] == '"v1"' and response.headers.get("ETAG") == '"v1"'
            assert await response.json() == {"state": "idle", "ua": "farmhand-agent"}
    await http.close()


async def test_one_connection_serves_many_requests(serve) -> None:
    peers: set[object] = set()

    async def hello(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        return web.Response(text="hi")

    base = await serve([web.get("/", hello)])
    http = HttpClient(base)
    for _ in range(5):
        async with http.get("/") as response:
            assert await response.text() == "hi"
    await http.close()
    assert len(peers) == 1


async def test_a_connection_the_server_closed_while_idle_is_not_reused(serve) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    base = await serve([web.get("/", hello)], keepalive_timeout=0.2)
    http = HttpClient(base)
    for _ in range(3):
        async with http.get("/") as response:
            assert await response.text() == "hi"
        await asyncio.sleep(0.4)  # the server drops the idle connection meanwhile
    await http.close()


async def test_a_streamed_body_arrives_whole_and_chunked_responses_stream(serve, tmp_path: Path) -> None:
    async def store(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                                  "length": request.headers.get("Content-Length")})

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i in range(50):
            await response.write(bytes([i]) * 1000)
        await response.write_eof()
        return response

    base = await serve([web.put("/files/{name}", store), web.get("/stream", stream)])
    data = bytes(range(256)) * 4000
    path = tmp_path / "job.gcode"
    path.write_bytes(data)

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(data), 70_000):
            yield data[at:at + 70_000]

    http = HttpClient(base)
    async with http.request("PUT", "/files/job.gcode", body=chunks(),
                            headers={"Content-Length": str(len(data))}) as response:
        assert await response.json() == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                                         "length": str(len(data))}
    async with http.request("PUT", "/files/job.gcode", body=chunks()) as response:  # no length: sent chunked
        assert (await response.json())["bytes"] == len(data)
    async with http.get("/stream") as response:
        got = [chunk async for chunk in response.iter_chunks()]
    assert b"".join(got) == b"".join(bytes([i]) * 1000 for i in range(50))
    await http.close()


async def test_a_multipart_form_carries_its_fields_and_file(serve, tmp_path: Path) -> None:
    async def upload(request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        assert isinstance(upload, web.FileField)
        return web.json_response({"root": form["root"], "name": upload.filename, "type": upload.content_type,
                                  "sha256": hashlib.sha256(upload.file.read()).hexdigest()})

    base = await serve([web.post("/server/files/upload", upload)])
    data = b"G1 X10\n" * 50_000
    path = tmp_path / "plate.gcode"
    path.write_bytes(data)
    form = Multipart().field("root", "gcodes").file("file", path, filename='Bracket "v2" ünï.gcode')
    http = HttpClient(base)
    async with http.post("/server/files/upload", body=form) as response:
        assert response.status == 200
        answer = await response.json()
    await http.close()
    assert answer == {"root": "gcodes", "name": 'Bracket %22v2%22 ünï.gcode', "type": "application/octet-stream",
                      "sha256": hashlib.sha256(data).hexdigest()}


async def test_a_post_is_never_sent_twice_but_a_get_is_retried_on_a_broken_kept_connection(serve) -> None:
    seen: list[str] = []

    async def answer_then_drop_next(request: web.Request) -> web.StreamResponse:
        seen.append(request.method)
        if len(seen) % 2 == 0:  # every second request: the connection breaks before any answer
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        return web.Response(text="ok")

    base = await serve([web.route("*", "/job", answer_then_drop_next)])
    http = HttpClient(base)
    async with http.post("/job", body=b"{}") as response:
        assert await response.text() == "ok"
    with pytest.raises(RequestFailed):
        async with http.post("/job", body=b'{"command": "start"}'):
            pass
    assert seen == ["POST", "POST"]  # the start went out once, and its failure was said
    async with http.get("/job") as response:
        assert await response.text() == "ok"
    async with http.get("/job") as response:  # breaks on the kept connection, retried on a new one
        assert await response.text() == "ok"
    assert seen == ["POST", "POST", "GET", "GET", "GET"]
    await http.close()


async def test_refused_and_silent_servers_fail_in_time() -> None:
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    with pytest.raises(ConnectFailed, match="cannot connect"):
        async with HttpClient(f"http://127.0.0.1:{port}").get("/"):
            pass

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        await asyncio.sleep(30)

    silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{silent.sockets[0].getsockname()[1]}"
    try:
        with pytest.raises(TimeoutError):
            async with HttpClient(url, timeout=Timeout(read=0.2)).get("/"):
                pass
        with pytest.raises(TimeoutError):
            async with HttpClient(url, timeout=Timeout(total=0.2)).get("/"):
                pass
    finally:
        silent.close()
    with pytest.raises(InvalidUrl):
        async with HttpClient().get("ftp://printer/"):
            pass


async def test_websocket_messages_pings_and_the_servers_close(serve) -> None:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=0.1)  # pings us every 0.1 s: unanswered pings would close it
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                if message.data == "bye":
                    await ws.close(code=4000, message=b"asked to")
                    break
                await asyncio.sleep(0.3)  # several pings come and are answered meanwhile
                await ws.send_str(json.dumps({"echo": json.loads(message.data), "big": "x" * 200_000}))
        return ws

    async def guarded(request: web.Request) -> web.Response:
        return web.Response(status=401, text="no key")

    base = await serve([web.get("/websocket", echo), web.get("/guarded", guarded)])
    ws = await WebSocket.connect(base.replace("http", "ws") + "/websocket")
    await ws.send_json({"id": 1})
    assert json.loads(await ws.receive())["echo"] == {"id": 1}
    await ws.send_text("bye")
    assert [m async for m in ws] == []
    assert (ws.close_code, ws.close_reason) == (4000, "asked to")
    with pytest.raises(WebSocketClosed):
        await ws.send_text("after the close")
    with pytest.raises(WebSocketRejected) as refused:
        await WebSocket.connect(base + "/guarded")
    assert refused.value.status == 401 and refused.value.body == "no key"


async def test_a_websocket_peer_gone_silent_is_counted_lost_after_two_heartbeats() -> None:
    async def accept_then_silence(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _handshake(reader, writer)
        await asyncio.sleep(30)  # a printer switched off: no close, no FIN, no pong

    server = await asyncio.start_server(accept_then_silence, "127.0.0.1", 0)
    try:
        ws = await WebSocket.connect(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/", heartbeat=0.1)
        messages = await asyncio.wait_for(_all(ws), 5)
        assert messages == [] and ws.close_code == 1006 and "no answer" in ws.close_reason
    finally:
        server.close()


async def _all(ws: WebSocket) -> list[str]:
    return [message async for message in ws]


async def _handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, then: str | None = None) -> None:
    """A bare server's side of the handshake (RFC 6455 4.2.2); ``then``: a text message sent in the same write as
    the 101."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    key = next(line.split(":", 1)[1].strip() for line in head.split("\r\n")
               if line.lower().startswith("sec-websocket-key:"))
    accept = base64.b64encode(hashlib.sha1(key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    answer = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    if then is not None:  # a server's frame: unmasked, final, short
        answer += bytes((0x81, len(then))) + then.encode()
    writer.write(answer)


async def test_a_message_sent_with_the_handshakes_answer_is_received() -> None:
    """A server that greets at once (OctoPrint's ``connected``) sends its first frame in the same segment as
    the 101: it must come out of ``receive`` without waiting for more bytes."""
    async def accept_and_greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _handshake(reader, writer, then='{"connected": {}}')
        await asyncio.sleep(30)  # then nothing more

    server = await asyncio.start_server(accept_and_greet, "127.0.0.1", 0)
    try:
        ws = await WebSocket.connect(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/")
        assert await asyncio.wait_for(ws.receive(), 5) == '{"connected": {}}'
        await ws.close()
    finally:
        server.close()


async def test_fragments_interleaved_pings_and_a_close_frame_from_a_bare_server() -> None:
    """RFC 6455 as a server may send it: a text message in two fragments with a ping between them (answered with a
    pong carrying the ping's data, masked as a client's frames must be), then a close frame with a code and reason."""
    pongs: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _handshake(reader, writer)
        writer.write(bytes((0x01, 3)) + b"hel" + bytes((0x89, 4)) + b"beat" + bytes((0x80, 2)) + b"lo")
        head = await reader.readexactly(2)
        assert head[0] == 0x8A and head[1] & 0x80  # a final pong, masked
        key = await reader.readexactly(4)
        masked = await reader.readexactly(head[1] & 0x7F)
        pongs.append(bytes(b ^ key[i % 4] for i, b in enumerate(masked)))
        writer.write(bytes((0x88, 2 + 4)) + (4001).to_bytes(2, "big") + b"done")
        await asyncio.sleep(30)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        ws = await WebSocket.connect(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/")
        assert await asyncio.wait_for(_all(ws), 5) == ["hello"]
        assert pongs == [b"beat"] and (ws.close_code, ws.close_reason) == (4001, "done")
    finally:
        server.close()


async def test_long_messages_both_ways_and_text_that_is_not_utf8(serve) -> None:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str(message.data[::-1])
        return ws

    base = await serve([web.get("/ws", echo)])
    ws = await WebSocket.connect(base + "/ws")
    for size in (125, 126, 65_535, 65_536, 300_000):  # each length encoding, the client's masking at each
        text = "".join(chr(0x41 + i % 26) for i in range(size - 1)) + "é"
        await ws.send_text(text)
        assert await ws.receive() == text[::-1]
    await ws.close()

    async def bad_text(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _handshake(reader, writer)
        writer.write(bytes((0x81, 2)) + b"\xc3\x28")
        await asyncio.sleep(30)

    server = await asyncio.start_server(bad_text, "127.0.0.1", 0)
    try:
        ws = await WebSocket.connect(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/")
        assert await asyncio.wait_for(_all(ws), 5) == [] and ws.close_code == 1007
    finally:
        server.close()


async def _raw_server(answers: list[bytes]) -> tuple[asyncio.Server, str, list[bytes]]:
    """A bare HTTP server that answers each request head it reads with the next of ``answers`` (closing the
    connection after an answer that says ``Connection: close`` or has no length); returns what it read."""
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while answers:
            try:
                heads.append(await reader.readuntil(b"\r\n\r\n"))
            except asyncio.IncompleteReadError:
                return
            answer = answers.pop(0)
            writer.write(answer)
            await writer.drain()
            if b"close" in answer.lower() or b"content-length" not in answer.lower() and b"chunked" not in answer:
                writer.close()
                return

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", heads


async def test_bodies_framed_by_chunks_with_extensions_by_close_and_none_at_all() -> None:
    server, base, heads = await _raw_server([
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\nContent-Length: 99\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; charset=latin-1\r\n\r\ncaf\xe9 until close",
    ])
    http = HttpClient(base)
    try:
        async with http.get("/a") as response:
            assert await response.text() == "Wikipedia"
        async with http.get("/b") as response:
            assert response.status == 204 and await response.read() == b""
        async with http.get("/c", headers={"If-None-Match": '"a"'}) as response:  # a 304 has no body, whatever
            assert response.status == 304 and await response.read() == b""
        async with http.get("/d") as response:
            assert await response.text() == "café until close"
    finally:
        server.close()
        await http.close()
    assert [head.split(b" ")[1] for head in heads] == [b"/a", b"/b", b"/c", b"/d"]


async def test_malformed_answers_and_injected_headers_are_errors_not_guesses(tmp_path: Path) -> None:
    for answer, words in [(b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x response"),
                          (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header"),
                          (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello", "malformed Content-Length"),
                          (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
                           "malformed chunk size"),
                          (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nshort",
                           "still to come")]:
        server, base, _ = await _raw_server([answer])
        try:
            with pytest.raises(RequestFailed, match=words):
                async with HttpClient(base).get("/") as response:
                    await response.read()
        finally:
            server.close()
    with pytest.raises(RequestFailed, match="CR or LF"):
        async with HttpClient("http://127.0.0.1:9").get("/", headers={"X-Api-Key": "k\r\nX-Evil: 1"}):
            pass

    async def too_few() -> AsyncIterator[bytes]:
        yield b"only this"

    server, base, _ = await _raw_server([b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"])
    try:
        with pytest.raises(RequestFailed, match="not the 100 its Content-Length said"):
            async with HttpClient(base).request("PUT", "/f", body=too_few(), headers={"Content-Length": "100"}):
                pass
    finally:
        server.close()
