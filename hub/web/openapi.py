"""The OpenAPI 3.1 document of every route the hub serves, generated from the components' ``Op``s.

A route served without an ``Op`` still appears (with a generic body), so a
test can find it; ``tests/test_hub_layout.py`` requires every one to be typed.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from hub.access import required_roles
from hub.api import Op, Problem

REF_TEMPLATE = "#/components/schemas/{model}"


def _served(app: web.Application) -> list[tuple[str, str]]:
    out = []
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else None
        if canonical and route.method not in ("HEAD", "*") and (canonical.startswith("/api/v1/")
                                                                or canonical == "/healthz"):
            out.append((route.method, canonical))
    return out


def _tag(path: str) -> str:
    parts = [p for p in path.split("/") if p and not p.startswith("{")]
    return parts[2] if len(parts) > 2 and parts[:2] == ["api", "v1"] else (parts[-1] if parts else "root")


def _query_params(model: type[BaseModel], defs: dict[str, Any]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    defs.update(schema.pop("$defs", {}))
    required = set(schema.get("required", []))
    return [{"name": name, "in": "query", "required": name in required, "schema": prop,
             **({"description": prop["description"]} if "description" in prop else {})}
            for name, prop in schema.get("properties", {}).items()]


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/problem+json": {"schema": {"$ref": REF_TEMPLATE.format(model="Problem")}}}}


class OpenApiDocument(BaseModel):
    """An OpenAPI 3.1 document (its own schema is the OpenAPI specification's)."""

    model_config = ConfigDict(extra="allow")

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]


def openapi(app: web.Application, ops: list[Op], *, title: str, version: str) -> dict[str, Any]:
    documented = {(op.method, op.path): op for op in ops}
    models = {Problem} | {m for op in ops for m in (op.body, op.response) if m is not None}
    keyed, defs_doc = models_json_schema([(m, "validation" if any(op.body is m for op in ops)
                                           else "serialization") for m in models], ref_template=REF_TEMPLATE)
    schemas: dict[str, Any] = dict(defs_doc.get("$defs", {}))
    ref = {model: keyed[(model, mode)] for (model, mode) in keyed}

    paths: dict[str, dict[str, Any]] = {}
    for method, path in sorted(set(_served(app))):
        op = documented.get((method, path))
        operation: dict[str, Any] = {
            "operationId": f"{method.lower()}_{re.sub(r'[^A-Za-z0-9]+', '_', path).strip('_')}",
            "tags": list(op.tags) if op and op.tags else [_tag(path)],
            "responses": {},
        }
        if op and op.summary:
            operation["summary"] = op.summary
        params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in re.findall(r"{([^}:]+)", path)]
        if op and op.query:
            params += _query_params(op.query, schemas)
        if params:
            operation["parameters"] = params
        if op and op.body:
            operation["requestBody"] = {"required": True, "content": {op.body_type: {"schema": ref[op.body]}}}
        elif op and op.body_type != "application/json":
            operation["requestBody"] = {"required": True, "content": {op.body_type: {"schema": {
                "type": "string", "format": "binary"}}}}
        ok: dict[str, Any] = {"description": "OK"}
        if op and op.response:
            ok["content"] = {op.response_type: {"schema": ref[op.response]}}
        elif op and op.response_type != "application/json":
            ok["content"] = {op.response_type: {"schema": {"type": "string", "format": "binary"}}}
        operation["responses"][str(op.status if op else 200)] = ok
        roles = required_roles(method, path)
        if roles is not None:
            operation["security"] = [{"bearer": []}, {"session": []}]
            operation["x-roles"] = sorted(r.value for r in roles)
            operation["responses"]["401"] = _problem("not authenticated")
            operation["responses"]["403"] = _problem("authenticated, but this role may not do this")
        else:
            operation["security"] = []
        if method == "GET":
            operation["responses"]["304"] = {"description": "not modified since the ETag sent in If-None-Match"}
        operation["responses"]["4XX"] = _problem("the request was refused; `detail` says why")
        paths.setdefault(path, {})[method.lower()] = operation

    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "Farmhand hub HTTP API. Errors are RFC 9457 problem details."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "API token (farmhand token create)"},
                "session": {"type": "apiKey", "in": "cookie", "name": "farmhand_session"},
            },
        },
    }
