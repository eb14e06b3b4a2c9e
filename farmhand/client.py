"""A Python client for scripts: the hub's HTTP API (``HubClient``) and its MQTT
side (``MqttClient``: request/response and the agents' events).

Plain blocking calls, standard library HTTP and paho-mqtt, so a cron job or a
notebook can use it without an event loop::

    hub = HubClient("http://hub:8080", token="fh_...")
    sha = hub.upload("part.gcode")["sha256"]
    job = hub.submit(sha, copies=1)[0]
    print(hub.wait(job["id"])["state"])
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

TERMINAL = frozenset({"completed", "failed", "cancelled"})
CHUNK = 256 * 1024

Progress = Callable[[int, int], None]  # (done, total)


class HubError(Exception):
    """The hub refused a request; ``detail`` is its explanation (RFC 9457 problem details)."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status, self.title, self.detail = status, title, detail


class _Upload:
    """A file body that reports how much of it was read, for progress bars."""

    def __init__(self, path: Path, progress: Progress | None) -> None:
        self.file = path.open("rb")
        self.size = path.stat().st_size
        self.done = 0
        self.progress = progress

    def read(self, n: int = CHUNK) -> bytes:
        chunk = self.file.read(min(n, CHUNK) if n > 0 else CHUNK)
        self.done += len(chunk)
        if self.progress is not None:
            self.progress(self.done, self.size)
        return chunk


class HubClient:
    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None, *, params: dict[str, Any] | None = None,
                data: Any = None, headers: dict[str, str] | None = None) -> Any:
        query = f"?{urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})}" if params else ""
        h = {"Authorization": f"Bearer {self.token}", "Accept": "application/json", **(headers or {})}
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        req = urllib.request.Request(f"{self.url}{path}{query}", data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                raw = r.read()
                return json.loads(raw) if raw and "json" in r.headers.get("Content-Type", "") else raw
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                problem = json.loads(raw)
            except ValueError:
                problem = {"title": exc.reason, "detail": raw.decode(errors="replace")}
            raise HubError(exc.code, problem.get("title", ""), problem.get("detail", "")) from None

    def pages(self, path: str, **filters: Any) -> Iterator[dict[str, Any]]:
        cursor = None
        while True:
            page = self.request("GET", path, params={**filters, "limit": 500, "cursor": cursor})
            yield from page["items"]
            if (cursor := page.get("next")) is None:
                return

    # ------------------------------------------------------------------ files and jobs

    def upload(self, path: str | Path, progress: Progress | None = None) -> dict[str, Any]:
        path = Path(path)
        body = _Upload(path, progress)
        try:
            return self.request("POST", "/api/v1/files", params={"name": path.name}, data=body,
                                headers={"Content-Type": "application/octet-stream",
                                         "Content-Length": str(body.size)})
        finally:
            body.file.close()

    def submit(self, sha256: str, copies: int = 1, *, name: str | None = None, priority: int = 0,
               device: str | None = None) -> list[dict[str, Any]]:
        """Queue ``copies`` jobs of one file; each copy has its own idempotency key, so a retry queues no extra."""
        batch = uuid.uuid4().hex
        jobs = []
        for n in range(copies):
            spec = {"file_sha256": sha256, "priority": priority, "device": device,
                    "name": f"{name} ({n + 1}/{copies})" if name and copies > 1 else name}
            jobs.append(self.request("POST", "/api/v1/jobs", {k: v for k, v in spec.items() if v is not None},
                                     headers={"Idempotency-Key": f"{batch}-{n}"}))
        return jobs

    def job(self, job_id: int) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/jobs/{job_id}")

    def jobs(self, state: str | None = None) -> list[dict[str, Any]]:
        return list(self.pages("/api/v1/jobs", state=state))

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self.request("POST", f"/api/v1/jobs/{job_id}/cancel")

    def devices(self) -> list[dict[str, Any]]:
        return list(self.pages("/api/v1/devices"))

    def create_token(self, name: str, role: str) -> dict[str, Any]:
        return self.request("POST", "/api/v1/tokens", {"name": name, "role": role})

    def users(self) -> list[dict[str, Any]]:
        return list(self.pages("/api/v1/users"))

    def set_user_disabled(self, user_id: int, disabled: bool) -> dict[str, Any]:
        return self.request("PATCH", f"/api/v1/users/{user_id}", {"disabled": disabled})

    def end_sessions(self, user_id: int) -> dict[str, Any]:
        return self.request("DELETE", f"/api/v1/users/{user_id}/sessions")

    def delete_user(self, user_id: int) -> None:
        self.request("DELETE", f"/api/v1/users/{user_id}")

    def wait(self, job_ids: int | list[int], *, timeout: float | None = None, poll_s: float = 1.0,
             progress: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
        """Poll until every job is completed, failed or cancelled; returns them."""
        ids = [job_ids] if isinstance(job_ids, int) else list(job_ids)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            jobs = [self.job(i) for i in ids]
            if progress is not None:
                progress(jobs)
            if all(j["state"] in TERMINAL for j in jobs):
                return jobs
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"jobs still running after {timeout} s: "
                                   + ", ".join(f"{j['id']}={j['state']}" for j in jobs if j["state"] not in TERMINAL))
            time.sleep(poll_s)


class MqttClient:
    """The hub's MQTT side: ``request`` (submit/get/list/cancel jobs) and ``on_event`` for agents' events."""

    def __init__(self, url: str = "mqtt://127.0.0.1:1883", client_id: str | None = None) -> None:
        """A script logged in (``mqtt://erp:PASSWORD@broker``) asks on its login's own request topic,
        the one the broker's rules let it use (``farmhand broker add-script erp``)."""
        import paho.mqtt.client as mqtt

        from protocol import codec, topics

        self._codec, self._topics = codec, topics
        parsed = urllib.parse.urlparse(url)
        self.client_id = client_id or f"script-{uuid.uuid4().hex[:10]}"
        self.name = urllib.parse.unquote(parsed.username) if parsed.username else self.client_id
        """The request/response topics' level: the login, or the client id without one."""
        self._answers: dict[str, queue.Queue[Any]] = {}
        self._handlers: list[tuple[str | None, Callable[[str, Any], None]]] = []
        self._connected = threading.Event()
        self._mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id)
        if parsed.username:
            self._mqtt.username_pw_set(parsed.username, parsed.password)
        self._mqtt.on_connect = self._on_connect
        self._mqtt.on_message = self._on_message
        self._mqtt.connect(parsed.hostname or "127.0.0.1", parsed.port or 1883)
        self._mqtt.loop_start()
        if not self._connected.wait(10):
            raise ConnectionError(f"no MQTT connection to {url}")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        client.subscribe(self._topics.hub_response(self.name), qos=1)
        client.subscribe(self._topics.node_event("+"), qos=1)
        self._connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            env = self._codec.decode(msg.payload)
        except Exception:  # noqa: BLE001 - a stray payload must not kill paho's thread
            return
        body = env.body
        if body.type == "response" and body.correlation_id in self._answers:
            self._answers[body.correlation_id].put(body)
            return
        node = msg.topic.split("/")[-2]
        for wanted, handler in self._handlers:
            if wanted is None or wanted == body.type:
                handler(node, body)

    def on_event(self, handler: Callable[[str, Any], None], event_type: str | None = None) -> None:
        """Call ``handler(node, event)`` for each agent event (of ``event_type``, e.g. 'device_error')."""
        self._handlers.append((event_type, handler))

    def request(self, method: str, timeout: float = 10.0, **params: Any) -> Any:
        from protocol.messages import Request

        cid = uuid.uuid4().hex
        answer: queue.Queue[Any] = queue.Queue(1)
        self._answers[cid] = answer
        try:
            payload = self._codec.encode(self._codec.make(self.client_id, Request(
                correlation_id=cid, method=method, params=params)))  # type: ignore[arg-type]
            self._mqtt.publish(self._topics.hub_request(self.name), payload, qos=1)
            response = answer.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"the hub did not answer {method} within {timeout} s") from None
        finally:
            self._answers.pop(cid, None)
        if not response.ok:
            raise HubError(422, method, response.error or "refused")
        return response.result

    def close(self) -> None:
        self._mqtt.loop_stop()
        self._mqtt.disconnect()
