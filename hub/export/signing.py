"""Webhook signatures: ``X-Farmhand-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``.

The MAC covers ``"<t>." + body``, so a captured request replayed later fails the receiver's age check and a
changed timestamp fails the MAC. Receivers use ``verify`` (or do the same in their own language).
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Farmhand-Signature"
DEFAULT_TOLERANCE_S = 300.0


class BadSignature(ValueError):
    """The request was not signed with this secret, or was signed too long ago."""


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, now: float | None = None) -> str:
    """The header value for ``body`` sent now."""
    t = int(time.time() if now is None else now)
    return f"t={t},v1={_mac(secret, t, body)}"


def verify(secret: str, header: str, body: bytes, tolerance_s: float = DEFAULT_TOLERANCE_S,
           now: float | None = None) -> int:
    """Check a received request; returns its timestamp, raises ``BadSignature`` saying why not."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        raise BadSignature(f"{HEADER} has no t=<unix seconds>") from None
    if "v1" not in parts:
        raise BadSignature(f"{HEADER} has no v1=<hmac>")
    if not hmac.compare_digest(parts["v1"], _mac(secret, t, body)):
        raise BadSignature("the signature does not match the body and secret")
    age = (time.time() if now is None else now) - t
    if abs(age) > tolerance_s:
        raise BadSignature(f"signed {age:.0f} s ago; more than {tolerance_s:.0f} s is refused as a replay")
    return t
