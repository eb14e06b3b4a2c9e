"""The agent's loop and TLS: every connection reads into a buffer of ``TLS_READ_SIZE`` (asyncio's own is 256 KiB,
resident per connection: 13 MB for 50 Bambu printers), and what is sent still arrives whole."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from agent.loop import TLS_READ_SIZE
from farmhand.sim.bambu_broker import make_certificate


async def test_a_tls_connection_reads_into_a_small_buffer_and_loses_nothing(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path, "loop-test")
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(cert, key)
    trusted = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    trusted.load_verify_locations(cert)
    # Many times the buffer, in writes that each span several TLS records.
    payload = bytes(range(256)) * (20 * TLS_READ_SIZE // 256)

    async def send(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for at in range(0, len(payload), 3 * TLS_READ_SIZE):
            writer.write(payload[at:at + 3 * TLS_READ_SIZE])
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(send, "127.0.0.1", 0, ssl=served)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=trusted, server_hostname="loop-test")
        # The buffer is asyncio's own; its transport is the one place it can be seen.
        assert len(writer.transport._ssl_protocol._ssl_buffer) == TLS_READ_SIZE  # type: ignore[attr-defined]
        assert await reader.read() == payload
        writer.close()
        await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
