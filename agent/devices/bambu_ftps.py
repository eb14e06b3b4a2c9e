"""Job files onto a Bambu printer's SD card: implicit FTPS, the way the printer's vsftpd wants it.

The printer speaks TLS from the first byte on port 990 (implicit FTPS, not
``AUTH TLS``), and refuses a data connection that does not resume the control
connection's TLS session (vsftpd's ``require_ssl_reuse``), which the standard
library's ``FTP_TLS`` does not do. This small subclass does both; the upload
runs in a thread so the agent's loop never waits on it.
"""

from __future__ import annotations

import ftplib
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

BLOCK = 64 * 1024


class UploadFailed(Exception):
    """The file did not arrive whole; the text says what the printer answered."""


class ImplicitFTPS(ftplib.FTP_TLS):
    """FTP over TLS from the first byte; data connections resume the control connection's TLS session."""

    def __init__(self, context: ssl.SSLContext, server_name: str, timeout: float) -> None:
        super().__init__(context=context, timeout=timeout)
        self.server_name = server_name

    def connect(self, host: str = "", port: int = 0, timeout: float = -999,  # noqa: ARG002 - ftplib's signature
                source_address: Any = None) -> str:
        self.host, self.port = host, port
        raw = socket.create_connection((host, port), self.timeout)
        self.af = raw.family
        self.sock = self.context.wrap_socket(raw, server_hostname=self.server_name)
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        assert isinstance(self.sock, ssl.SSLSocket)
        conn = self.context.wrap_socket(conn, server_hostname=self.server_name, session=self.sock.session)
        return conn, size


def upload(*, host: str, port: int, context: ssl.SSLContext, server_name: str, access_code: str,
           path: Path, name: str, progress: Callable[[int, int], None], timeout: float = 30.0) -> int:
    """Store ``path`` as ``name`` in the SD card's root; returns the size the printer reports, which must match.

    Blocking: call it in a thread. ``progress(sent, total)`` is called per block.
    """
    total = path.stat().st_size
    ftp = ImplicitFTPS(context, server_name, timeout)
    try:
        ftp.connect(host, port)
        try:
            ftp.login("bblp", access_code)
        except ftplib.error_perm as exc:
            raise UploadFailed(f"the printer's FTPS refused the access code ({exc})") from None
        ftp.prot_p()
        sent = 0

        def counted(block: bytes) -> None:
            nonlocal sent
            sent += len(block)
            progress(sent, total)

        with path.open("rb") as f:
            ftp.storbinary(f"STOR {name}", f, blocksize=BLOCK, callback=counted)
        stored = ftp.size(name)
        if stored != total:
            raise UploadFailed(f"the printer holds {stored} bytes of {name}, not {total}")
        return stored
    except ftplib.Error as exc:
        raise UploadFailed(f"the printer's FTPS answered: {exc}") from None
    finally:
        try:
            ftp.quit()
        except Exception:  # never connected, or the link is gone: nothing left to say goodbye to
            ftp.close()
