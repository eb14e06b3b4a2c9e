"""Hypothesis strategies that draw JSON documents from a JSON Schema, and near-misses of them.

Covers the part of JSON Schema that pydantic writes for the protocol's models
(``$ref``, ``anyOf``/``oneOf``, ``const``, ``enum``, objects with required and
optional properties or ``additionalProperties``, strings with ``pattern``,
length bounds and ``date-time``, bounded numbers, arrays). Arrays and free-form
objects are kept short: the point is shape, not volume.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from hypothesis import strategies as st

MAX_ITEMS = 3


def documents(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Documents valid against ``schema`` (``defs`` resolves ``#/$defs/...``)."""
    if "$ref" in schema:
        return st.deferred(lambda: documents(defs[schema["$ref"].rsplit("/", 1)[-1]], defs))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([documents(s, defs) for s in schema[key]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        return _object(schema, defs)
    if kind == "array":
        high = min(schema.get("maxItems", MAX_ITEMS), MAX_ITEMS)
        return st.lists(documents(schema.get("items", {}), defs), min_size=min(schema.get("minItems", 0), high),
                        max_size=high)
    if kind == "string":
        return _string(schema)
    if kind == "integer":
        low = schema.get("minimum", schema.get("exclusiveMinimum", -(2**31) - 1) + 1 if "exclusiveMinimum" in schema
                         else -(2**31))
        return st.integers(min_value=low, max_value=schema.get("maximum", 2**31))
    if kind == "number":
        return st.floats(min_value=schema.get("minimum", -1e9), max_value=schema.get("maximum", 1e9),
                         exclude_min="exclusiveMinimum" in schema, allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8))  # any JSON value


def _object(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    properties = schema.get("properties", {})
    if not properties:
        values = schema.get("additionalProperties")
        values = values if isinstance(values, dict) else {}
        return st.dictionaries(st.text(min_size=1, max_size=6), documents(values, defs),
                               max_size=min(schema.get("maxProperties", MAX_ITEMS), MAX_ITEMS))
    # A const property is a discriminator tag (``type``): optional in the schema by its default,
    # yet what tells a union's members apart.
    required = set(schema.get("required", ())) | {k for k, v in properties.items() if "const" in v}
    return st.fixed_dictionaries(
        {k: documents(v, defs) for k, v in properties.items() if k in required},
        optional={k: documents(v, defs) for k, v in properties.items() if k not in required},
    )


def _string(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    low, high = schema.get("minLength", 0), min(schema.get("maxLength", 40), 40)
    if schema.get("format") == "date-time":
        return st.datetimes(timezones=st.just(UTC)).map(lambda t: t.isoformat())
    if "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: low <= len(s) <= high)
    return st.text(min_size=low, max_size=max(low, high))


WRONG_VALUES = (None, True, -1, 2**70, 1.5, "", "x" * 300, [], {})


@st.composite
def near_misses(draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A valid envelope with one thing wrong in its body: a field dropped, retyped or unknown."""
    document = draw(valid)
    body = dict(document["body"])
    field = draw(st.sampled_from(sorted(body)))
    match draw(st.sampled_from(("drop", "retype", "unknown"))):
        case "drop":
            body.pop(field)
        case "retype":
            body[field] = draw(st.sampled_from(WRONG_VALUES).filter(lambda v: v != body[field]))
        case "unknown":
            body["not_a_field"] = 1
    return {**document, "body": body}
