"""The hub's shape (hub/README.md): components that talk only through each other's public interface,
typed routes in the OpenAPI document, short modules, and names that mean one thing."""

from __future__ import annotations

import ast
import inspect
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol import topics
from protocol.messages import ConsoleOutput

from hub.api import Op
from hub.app import Hub
from hub.config import HubConfig
from hub.mqtt import Mqtt
from hub.store import Store
from hub.web import Web
from hub.web.openapi import openapi

ROOT = Path(__file__).resolve().parent.parent
HUB = ROOT / "hub"
# Packages every component may use whole: the HTTP toolkit, pure file analysis.
LIBRARIES = {"api", "analysis"}
# Modules at hub/ level that are the hub's kernel, not components.
KERNEL = {"hub.app", "hub.bus", "hub.component", "hub.config", "hub.ids", "hub.store", "hub.schema"}
MAX_LINES = 400
# hub/config.py holds every TOML section, except these, kept in their component's package (export, backup).
SECTIONS_KEPT_BESIDE_THEIR_CODE = {("hub.config", "hub.backup.schedule"), ("hub.config", "hub.export.config")}

# Same-named classes owned by work in progress elsewhere (agent drivers, the serial link, the
# estimator) or named by a public contract (``Device`` is an OpenAPI schema name). Remove an entry
# when its rename lands; the test fails on any duplicate not listed here.
KNOWN_DUPLICATES = {
    "Console": "agent/commands.py (console command runner) and agent/serial/console.py",
    "Kind": "agent/serial/responses.py and agent/serial/window.py",
    "Outcome": "agent/render/blender_cli.py and agent/serial/host.py",
    "Listener": "agent/serial/connection.py and hub/analysis/interpreter.py",
    "Reply": "agent/devices/prusalink_http.py (an HTTP answer) and agent/serial/responses.py (a firmware line)",
    "UploadFailed": "agent/devices/bambu_ftps.py (FTPS to a printer) and agent/render/upload.py (frames to the hub)",
    "Device": "agent/devices/base.py (the driver interface) and hub/fleet/schemas.py (the API's schema name)",
}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file, relative ones resolved."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            # "from hub.jobs import service" reaches into the package as surely as "import hub.jobs.service".
            out += [(node.lineno, f"{target}.{a.name}") for a in node.names
                    if (HUB / Path(*f"{target}.{a.name}".split(".")[1:])).with_suffix(".py").exists()]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
    return out


def _hub_files() -> list[Path]:
    return sorted(HUB.rglob("*.py"))


def _component_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (HUB / parts[1]).is_dir()) else None


def test_components_import_only_each_others_public_interface() -> None:
    """``from hub.jobs import JobService`` is fine; ``from hub.jobs.service import …`` from outside is not."""
    wrong = []
    for path in _hub_files():
        here = _module(path)
        own = _component_of(here)
        for line, target in _imports(path):
            if not target.startswith("hub.") or target in KERNEL or (here, target) in SECTIONS_KEPT_BESIDE_THEIR_CODE:
                continue
            other = target.split(".")[1]
            if other == own or other in LIBRARIES or len(target.split(".")) == 2:
                continue
            wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert wrong == [], "import the component's package (its __init__ names its public interface):\n" + "\n".join(
        wrong)


def test_nothing_in_the_hub_patches_another_objects_methods() -> None:
    found = [f"{p.relative_to(ROOT)}:{n}" for p in _hub_files()
             for n, line in enumerate(p.read_text().splitlines(), 1) if "method-assign" in line]
    assert found == [], "subscribe (ingest.subscribe/observe, outbox.observe) instead of wrapping: " + ", ".join(found)


def test_no_hub_module_is_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _hub_files() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split these (one module, one job): {long}"


def test_no_two_classes_share_a_name_across_agent_hub_and_protocol() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for package in ("agent", "hub", "protocol"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                    where[node.name].append(str(path.relative_to(ROOT)))
    duplicates = {name: files for name, files in where.items() if len(files) > 1 and name not in KNOWN_DUPLICATES}
    assert duplicates == {}, "give each class a name that says which one it is"
    stale = {name for name in KNOWN_DUPLICATES if len(where.get(name, [])) < 2}
    assert stale == set(), f"renamed already: drop these from KNOWN_DUPLICATES: {stale}"


@pytest.fixture
def built(tmp_path: Path) -> Iterator[Hub]:
    """The hub's components as built (not started: no broker, no port)."""
    config = HubConfig.model_validate({"hub_id": "layout", "data_dir": tmp_path, "auth": {
        "admin_password": "layout-password-1"}})
    hub = Hub(config)
    store = Store(tmp_path)
    try:
        hub.components = hub._build(store)
        yield hub
    finally:
        store.close()


@pytest.fixture
def served(built: Hub) -> tuple[dict, list[Op]]:  # type: ignore[type-arg]
    """The OpenAPI document of the hub as built."""
    web = next(c for c in built.components if isinstance(c, Web))
    app = web.app()
    ops = [op for c in built.components for op in c.ops()]
    return openapi(app, ops, title="t", version="0"), ops


def test_every_message_the_hub_accepts_has_a_component_that_takes_its_type(built: Hub) -> None:
    """Typed subscriptions: a body type allowed on a topic the hub listens to reaches some component."""
    kinds = ("node_state", "device_status", "device_telemetry", "node_metrics", "node_event", "hub_request")
    accepted = {t for kind in kinds for t in topics.allowed_bodies(kind)}
    ingest = next(c for c in built.components if isinstance(c, Mqtt)).ingest
    # A console reply changes no state: the events table keeps it, the console view shows it.
    assert {t.__name__ for t in accepted - ingest.applied()} == {"ConsoleOutput"}
    assert ConsoleOutput in ingest.observed()


def _typed(content: dict, schemas: dict) -> bool:  # type: ignore[type-arg]
    """A body is typed when its media type is not JSON (bytes) or its schema is a declared model."""
    if not content:
        return False
    for media, spec in content.items():
        schema = spec.get("schema", {})
        if "json" not in media:
            continue
        ref = schema.get("$ref", "")
        name = ref.rsplit("/", 1)[-1]
        model = schemas.get(name, {})
        if not ref or not (model.get("properties") or model.get("anyOf") or model.get("oneOf")):
            return False
    return True


def _reads_body(op: Op) -> bool:
    source = inspect.getsource(op.handler)
    return bool(re.search(r"(?<![.\w])body\(request|request\.(json|read|post|multipart|content)|multipart_reader", source))


def test_every_route_in_the_openapi_document_has_typed_bodies(served: tuple[dict, list[Op]]) -> None:  # type: ignore[type-arg]
    doc, ops = served
    schemas = doc["components"]["schemas"]
    declared = {(op.method.lower(), op.path): op for op in ops}
    untyped = []
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            op = declared.get((method, path))
            if op is None:
                untyped.append(f"{method.upper()} {path}: served without an Op")
                continue
            code, ok = next((c, r) for c, r in operation["responses"].items() if c.startswith(("1", "2")))
            if code != "204" and not _typed(ok.get("content", {}), schemas):
                untyped.append(f"{method.upper()} {path}: response has no model")
            if _reads_body(op) and not _typed(operation.get("requestBody", {}).get("content", {}), schemas):
                untyped.append(f"{method.upper()} {path}: reads a body that has no model")
    assert untyped == [], "\n".join(untyped)


def test_the_typed_body_check_fails_on_a_generic_body(served: tuple[dict, list[Op]]) -> None:  # type: ignore[type-arg]
    doc, _ = served
    assert not _typed({"application/json": {"schema": {}}}, doc["components"]["schemas"])
    assert not _typed({}, doc["components"]["schemas"])
    assert _typed({"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}, doc["components"]["schemas"])
