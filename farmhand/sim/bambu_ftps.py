"""A simulated Bambu printer's SD card server: implicit FTPS as the printer's vsftpd serves it.

TLS from the first byte (no ``AUTH TLS``), login ``bblp`` with the access code,
and, like vsftpd with ``require_ssl_reuse=YES``, a data connection that does not
resume the control connection's TLS session is dropped, so a client that
skips session reuse fails here as it would on the printer. ``SIZE`` answers
as vsftpd does, for clients that verify an upload by size.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import aioftp
import structlog

log = structlog.get_logger("farmhand.sim.bambu_ftps")


class SdCardServer(aioftp.Server):
    """One printer's SD card over implicit FTPS; ``refused_data`` counts data connections without session reuse."""

    def __init__(self, sdcard: Path, access_code: str, context: ssl.SSLContext) -> None:
        user = aioftp.User("bblp", access_code, base_path=sdcard, home_path="/",
                           permissions=[aioftp.Permission("/", readable=True, writable=True)])
        super().__init__([user], ssl=context, socket_timeout=30, wait_future_timeout=2)
        self.commands_mapping["size"] = self.size
        self.refused_data = 0
        self.port = 0

    async def listen(self, host: str = "127.0.0.1", port: int = 0) -> int:
        await self.start(host, port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def _start_passive_server(self, connection: aioftp.Connection,
                                    handler_callback: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                                               Awaitable[None]]) -> asyncio.Server:
        async def resumed_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            tls = writer.get_extra_info("ssl_object")
            if tls is None or not tls.session_reused:
                self.refused_data += 1
                log.warning("data connection without TLS session reuse refused")
                writer.close()
                return
            await handler_callback(reader, writer)

        return await super()._start_passive_server(connection, resumed_only)

    @aioftp.ConnectionConditions(aioftp.ConnectionConditions.login_required)
    async def size(self, connection: aioftp.Connection, rest: str) -> bool:
        path = self.get_paths(connection, rest)[0]
        if await connection.path_io.is_file(path):
            connection.response("213", str((await connection.path_io.stat(path)).st_size))
        else:
            connection.response("550", "Could not get file size.")
        return True

