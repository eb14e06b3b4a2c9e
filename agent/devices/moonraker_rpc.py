"""JSON-RPC 2.0 over Moonraker's ``/websocket``: calls matched to answers by id, notifications handed on.

One ``MoonrakerSocket`` is one websocket connection. ``call()`` sends a request
and waits for the answer with the same id; an error answer raises ``RpcError``
with Moonraker's code and message (a refused API key is code 401). Every
message that is not an answer (``notify_status_update``,
``notify_klippy_ready``, ``notify_gcode_response``, ``notify_proc_stat_update``…)
goes to ``on_notify(method, params)``. ``run()`` reads until the connection
ends; when it ends, every pending call fails with ``ConnectionError``.
Malformed messages are counted and logged, never fatal.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from typing import Any

import structlog

from agent.net import WebSocket, WebSocketClosed

log = structlog.get_logger("farmhand.agent.moonraker")

CALL_TIMEOUT_S = 30.0


class RpcError(Exception):
    """Moonraker answered a call with an error; ``message`` is its own words (often Klipper's)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Notify = Callable[[str, list[Any]], None]


class MoonrakerSocket:
    def __init__(self, ws: WebSocket, on_notify: Notify, on_traffic: Callable[[], None]) -> None:
        self._ws = ws
        self._on_notify = on_notify
        self._on_traffic = on_traffic
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.malformed = 0

    async def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = CALL_TIMEOUT_S) -> Any:
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
        if params:
            message["params"] = params
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation that arrives with
            # the answer, and a session that was told to stop then ran on forever.
            async with asyncio.timeout(timeout):
                await self._ws.send_text(json.dumps(message))
                return await future
        except TimeoutError:
            raise ConnectionError(f"Moonraker did not answer {method} in {timeout:.0f} s") from None
        except WebSocketClosed as exc:  # callers take a lost link as ConnectionError, whoever noticed it first
            raise ConnectionError(str(exc)) from None
        finally:
            self._pending.pop(request_id, None)

    async def run(self) -> None:
        """Read messages until the connection closes; then fail what is still waiting for an answer."""
        try:
            async for text in self._ws:
                self._on_traffic()
                self._received(text)
            reason = f": {self._ws.close_reason}" if self._ws.close_reason else ""
            raise ConnectionError(f"Moonraker closed the websocket (code {self._ws.close_code}){reason}")
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("the websocket closed before Moonraker answered"))

    def _received(self, text: str) -> None:
        try:
            message = json.loads(text)
            if not isinstance(message, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            self._malformed(text, str(exc))
            return
        if "id" in message and ("result" in message or "error" in message):
            future = self._pending.get(message["id"])
            if future is None or future.done():
                return  # an answer we stopped waiting for
            error = message.get("error")
            if error is not None:
                code = error.get("code", -1) if isinstance(error, dict) else -1
                text = error.get("message", str(error)) if isinstance(error, dict) else str(error)
                future.set_exception(RpcError(int(code) if isinstance(code, int) else -1, str(text)))
            else:
                future.set_result(message["result"])
            return
        method, params = message.get("method"), message.get("params", [])
        if not isinstance(method, str):
            self._malformed(text, "neither an answer nor a notification")
            return
        try:
            self._on_notify(method, params if isinstance(params, list) else [params])
        except Exception:  # a notification we misread must not end the connection
            self.malformed += 1
            log.exception("moonraker notification not understood", method=method)

    def _malformed(self, text: str, why: str) -> None:
        self.malformed += 1
        log.warning("malformed message from Moonraker", why=why, data=text[:200], count=self.malformed)

    async def close(self) -> None:
        await self._ws.close()
