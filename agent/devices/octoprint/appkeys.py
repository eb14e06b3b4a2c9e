"""Getting an application key from OctoPrint the way it wants third-party clients to.

The Application Keys plugin's flow: ask for a key for an app (optionally for one
user), show the person the link OctoPrint returns, and poll until they approve it in
OctoPrint's interface (the key comes back) or deny it (the request disappears).
The global API key, which OctoPrint deprecates, is never needed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from agent.net import HttpClient, Timeout

APP_NAME = "Farmhand agent"


class AppKeyRefused(Exception):
    """The person denied the request, it expired, or this OctoPrint has no Application Keys plugin."""


async def request_app_key(url: str, *, app: str = APP_NAME, user: str | None = None,
                          prompt: Callable[[str], None] = print, poll_s: float = 1.0,
                          timeout_s: float = 600.0) -> str:
    """Request a key for ``app`` and wait for a person to approve it; returns the key.

    ``prompt`` receives the address of OctoPrint's approval dialog (the person may also
    approve from the notification OctoPrint shows in its own interface). OctoPrint being
    unreachable raises ``agent.net.RequestFailed`` or ``TimeoutError``.
    """
    base = url.rstrip("/")
    http = HttpClient(base, timeout=Timeout(total=30))
    try:
        async with http.get("/plugin/appkeys/probe") as probe:
            await probe.read()
            if probe.status != 204:
                raise AppKeyRefused(f"{base} does not offer application keys (HTTP {probe.status} on the probe)")
        body: dict[str, str] = {"app": app}
        if user:
            body["user"] = user
        async with http.post("/plugin/appkeys/request", body=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"}) as asked:
            if asked.status != 201:
                raise AppKeyRefused(f"OctoPrint did not take the key request: HTTP {asked.status} "
                                    f"{(await asked.text(errors='replace'))[:200]}")
            answer = await asked.json()
            poll_url = asked.headers.get("Location") or f"/plugin/appkeys/request/{answer['app_token']}"
        prompt(answer.get("auth_dialog") or base)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            async with http.get(poll_url) as polled:
                if polled.status == 200:
                    return str((await polled.json())["api_key"])
                await polled.read()
                if polled.status != 202:
                    raise AppKeyRefused(f"the request for a key for {app!r} was denied or expired")
            await asyncio.sleep(poll_s)
    finally:
        await http.close()
    raise AppKeyRefused(f"nobody approved the key for {app!r} within {timeout_s:.0f} s")
