"""Where alert events go: webhooks (signed), an MQTT topic, e-mail; each event once per channel.

Every raised and resolved alert gets one delivery row per configured channel
(``alert_deliveries``, keyed by alert, channel and event), so a delivery is
sent until it succeeds (or runs out of attempts) and never twice after it did.
Webhook bodies are signed as the event export signs its own (hub/export/signing.py:
``X-Farmhand-Signature: t=<unix seconds>,v1=<HMAC-SHA256 of "t." + body>``), so a
receiver checks both with one ``verify``.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
from collections.abc import Awaitable, Callable
from email.message import EmailMessage

import aiohttp
import structlog

from hub.export import SIGNATURE_HEADER as SIGNATURE
from hub.export import sign
from hub.store import Store, utcnow
from .book import AlertBook, AlertRecord
from .config import AlertingConfig, EmailChannel, WebhookChannel

log = structlog.get_logger("farmhand.hub.alerting.channels")

Send = Callable[[str, AlertRecord, bytes], Awaitable[None]]  # (event, alert, JSON body)
Publish = Callable[[str, bytes], Awaitable[None]]  # returns once the broker has it


def body(hub_id: str, event: str, alert: AlertRecord) -> bytes:
    return json.dumps({"hub": hub_id, "event": event, "alert": alert.model_dump(exclude={"deliveries"})},
                      sort_keys=True).encode()


def _webhook(channel: WebhookChannel, session: Callable[[], aiohttp.ClientSession]) -> Send:
    async def send(event: str, alert: AlertRecord, payload: bytes) -> None:
        headers = {"Content-Type": "application/json", "X-Farmhand-Event": f"alert.{event}"}
        if channel.secret is not None:
            headers[SIGNATURE] = sign(channel.secret.get_secret_value(), payload)
        async with session().post(channel.url, data=payload, headers=headers,
                                  timeout=aiohttp.ClientTimeout(total=10)) as r:
            if r.status >= 300:
                raise RuntimeError(f"{channel.url} answered {r.status}")
    return send


def _mqtt(topic: str, publish: Publish) -> Send:
    async def send(event: str, alert: AlertRecord, payload: bytes) -> None:
        await publish(topic, payload)
    return send


class SmtpRefused(RuntimeError):
    """The SMTP server answered with an error; the text says where, at which step, and what it answered."""


def _email(channel: EmailChannel, farm: str) -> Send:
    # Built once: a ca_file that cannot be read stops the hub at start, not at the first alert.
    tls = ssl.create_default_context(cafile=channel.ca_file) if channel.starttls else None
    server = f"{channel.host}:{channel.port}"

    def deliver(message: EmailMessage) -> None:
        step = "connecting"
        try:
            with smtplib.SMTP(channel.host, channel.port, timeout=15) as smtp:
                if tls is not None:
                    step = "STARTTLS"
                    smtp.starttls(context=tls)
                if channel.username and channel.password:
                    step = f"logging in as {channel.username!r}"
                    smtp.login(channel.username, channel.password.get_secret_value())
                step = "sending"
                smtp.send_message(message)
        except smtplib.SMTPResponseException as exc:
            text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
            raise SmtpRefused(f"{server} refused {step}: {exc.smtp_code} {text}") from None

    async def send(event: str, alert: AlertRecord, payload: bytes) -> None:
        message = EmailMessage()
        state = "RESOLVED" if event == "resolved" else alert.severity.upper()
        message["Subject"] = f"[{farm}] {state}: {alert.subject} ({alert.rule or alert.kind})"
        message["From"], message["To"] = channel.sender, ", ".join(channel.to)
        lines = [alert.message, "", f"Alert #{alert.id}, raised {alert.created_at}"]
        if alert.resolved_at:
            lines.append(f"Resolved {alert.resolved_at}")
        message.set_content("\n".join(lines) + "\n")
        await asyncio.to_thread(deliver, message)
    return send


class Notifier:
    def __init__(self, store: Store, book: AlertBook, config: AlertingConfig, hub_id: str, publish: Publish) -> None:
        self.store = store
        self.book = book
        self.config = config
        self.hub_id = hub_id
        self._session: aiohttp.ClientSession | None = None
        self.channels: dict[str, Send] = {}
        for n, hook in enumerate(config.webhooks):
            self.channels[f"webhook:{n}"] = _webhook(hook, self._http)
        if config.mqtt_topic:
            self.channels["mqtt"] = _mqtt(config.mqtt_topic, publish)
        if config.email is not None:
            self.channels["email"] = _email(config.email, hub_id)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _enqueue(self) -> None:
        """A pending delivery for every alert event and channel that has none yet.

        Only events since the channel was first configured: adding e-mail does not mail the farm's history.
        """
        with self.store.transaction() as db:
            for channel in self.channels:
                key = f"alert_channel_since:{channel}"
                db.execute("INSERT OR IGNORE INTO settings (key, body, updated_at) VALUES (?, ?, ?)",
                           (key, json.dumps(utcnow()), utcnow()))
                since = json.loads(db.execute("SELECT body FROM settings WHERE key = ?", (key,)).fetchone()[0])
                db.execute("INSERT OR IGNORE INTO alert_deliveries (alert_id, channel, event, state)"
                           " SELECT id, ?, 'raised', 'pending' FROM alerts WHERE created_at >= ?", (channel, since))
                db.execute("INSERT OR IGNORE INTO alert_deliveries (alert_id, channel, event, state)"
                           " SELECT id, ?, 'resolved', 'pending' FROM alerts WHERE created_at >= ?"
                           " AND resolved_at IS NOT NULL", (channel, since))

    async def deliver(self) -> int:
        """Send what is pending, raised before resolved; returns how many went out."""
        if not self.channels:
            return 0
        self._enqueue()
        sent = 0
        waiting: set[tuple[int, str]] = set()  # (alert, channel) whose "raised" has not gone out yet
        for row in self.store.all("SELECT * FROM alert_deliveries WHERE state = 'pending'"
                                  " ORDER BY alert_id, event, channel"):  # 'raised' sorts before 'resolved'
            send = self.channels.get(row["channel"])
            if send is None or (row["alert_id"], row["channel"]) in waiting:  # unconfigured since, or out of order
                continue
            alert = self.book.get(row["alert_id"])
            key = (row["alert_id"], row["channel"], row["event"])
            try:
                await send(row["event"], alert, body(self.hub_id, row["event"], alert))
            except Exception as exc:  # a channel's failure is recorded, retried next pass, never fatal
                attempts = row["attempts"] + 1
                state = "failed" if attempts >= self.config.max_attempts else "pending"
                self.store.db.execute("UPDATE alert_deliveries SET attempts = ?, state = ?, last_error = ?"
                                      " WHERE alert_id = ? AND channel = ? AND event = ?",
                                      (attempts, state, f"{type(exc).__name__}: {exc}", *key))
                log.warning("alert_delivery_failed", alert_id=key[0], channel=key[1], alert_event=key[2],
                            attempts=attempts, error=str(exc))
                waiting.add((key[0], key[1]))
                continue
            self.store.db.execute("UPDATE alert_deliveries SET attempts = attempts + 1, state = 'sent',"
                                  " delivered_at = ? WHERE alert_id = ? AND channel = ? AND event = ?",
                                  (utcnow(), *key))
            log.info("alert_delivered", alert_id=key[0], channel=key[1], alert_event=key[2])
            sent += 1
        return sent
