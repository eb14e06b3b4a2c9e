"""JSON Schema of every message, generated from the models (never written by hand)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from .messages import Envelope
from .topics import SPECS


def envelope_schema() -> dict[str, Any]:
    schema = TypeAdapter(Envelope).json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Farmhand MQTT message (protocol v1)"
    schema["x-topics"] = [
        {
            "topic": s.pattern,
            "direction": s.direction,
            "qos": s.qos,
            "retain": s.retain,
            "types": [b.model_fields["type"].default for b in s.bodies],
            "purpose": s.purpose,
        }
        for s in SPECS
    ]
    return schema


def dump() -> str:
    return json.dumps(envelope_schema(), indent=2, sort_keys=False)
