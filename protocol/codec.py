"""JSON on the wire: encode envelopes, decode untrusted payloads with clear errors."""

from __future__ import annotations

from pydantic import ValidationError

from typing import TypeVar

from .messages import MAX_PAYLOAD_BYTES, Body, Envelope, Model

B = TypeVar("B", bound=Model)


class ProtocolError(ValueError):
    """A payload that is not a valid Farmhand message; the text names the field."""


class PayloadTooLarge(ProtocolError):
    """A payload over MAX_PAYLOAD_BYTES: refused before it is parsed."""


def encode(envelope: Envelope) -> bytes:
    return envelope.model_dump_json(exclude_none=True).encode()


def make(sender: str, body: Body, seq: int | None = None) -> Envelope:
    return Envelope(sender=sender, seq=seq, body=body)


def decode(payload: bytes | str) -> Envelope:
    """Parse and validate one payload; raise ProtocolError naming what is wrong."""
    size = len(payload.encode() if isinstance(payload, str) else payload)
    if size > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(f"payload of {size} bytes is over the limit of {MAX_PAYLOAD_BYTES}")
    try:
        return Envelope.model_validate_json(payload)
    except ValidationError as exc:
        raise ProtocolError(describe(exc)) from None


def decode_as(payload: bytes | str, expected: type[B]) -> B:
    """``decode``, insisting on one body type (what a topic may carry); ProtocolError naming both otherwise."""
    body = decode(payload).body
    if not isinstance(body, expected):
        raise ProtocolError(f"a {body.type} message where only {expected.model_fields['type'].default} belongs")
    return body


def describe(exc: ValidationError) -> str:
    """One line per problem: ``body.progress: Input should be ... (got 3)``."""
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        # Drop the union tag pydantic inserts ('body.job_progress.progress').
        loc = [str(p) for p in err["loc"]]
        if len(loc) >= 2 and loc[0] == "body" and not loc[1].isdigit():
            body_type = loc[1]
            loc = ["body", *loc[2:]]
            prefix = f"{'.'.join(loc) or 'body'} ({body_type})"
        else:
            prefix = ".".join(loc) or "payload"
        got = err.get("input")
        shown = "" if err["type"] in ("missing", "json_invalid") else f" (got {str(got)[:60]!r})"
        parts.append(f"{prefix}: {err['msg']}{shown}")
    more = len(exc.errors()) - 5
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)
