"""The versioned topic tree: builders, a parser, and the table that documents it.

Every topic starts with ``farmhand/v1``. A node (one agent process) owns the
subtree ``farmhand/v1/node/{node}/``; the hub owns ``farmhand/v1/hub/``. An ACL
on the broker can therefore confine each agent to its own subtree.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import messages as m

ROOT = "farmhand/v1"


@dataclass(frozen=True)
class TopicSpec:
    pattern: str
    direction: str
    qos: int
    retain: bool
    bodies: tuple[type[m.Model], ...]
    purpose: str


SPECS: tuple[TopicSpec, ...] = (
    TopicSpec(f"{ROOT}/hub/state", "hub → all", 1, True, (m.HubState,),
              "hub presence; the hub's Last Will sets online=false"),
    TopicSpec(f"{ROOT}/node/{{node}}/state", "agent → hub", 1, True, (m.NodeState,),
              "birth on every (re)connect with the full device list; the Last Will sets online=false"),
    TopicSpec(f"{ROOT}/node/{{node}}/device/{{device}}/status", "agent → hub", 1, True, (m.DeviceStatus,),
              "latest snapshot of one device"),
    TopicSpec(f"{ROOT}/node/{{node}}/device/{{device}}/telemetry", "agent → hub", 0, False, (m.Telemetry,),
              "temperatures and progress, lossy"),
    TopicSpec(f"{ROOT}/node/{{node}}/metrics", "agent → hub", 0, False, (m.HostMetrics,),
              "host CPU, memory, disk, temperature"),
    TopicSpec(f"{ROOT}/node/{{node}}/event", "agent → hub", 1, False, m.EVENT_TYPES,
              "job and device events and command acknowledgements, numbered by seq; spooled by the agent"),
    TopicSpec(f"{ROOT}/node/{{node}}/command", "hub → agent", 1, False, (*m.COMMAND_TYPES, m.Rebirth),
              "commands with an idempotency key (command_id); a rebirth request"),
    TopicSpec(f"{ROOT}/node/{{node}}/ack", "hub → agent", 1, False, (m.EventAck,),
              "the hub's confirmation: the node's events up to seq are stored; only then do they leave its outbox"),
    TopicSpec(f"{ROOT}/hub/request/{{client}}", "script → hub", 1, False, (m.Request,),
              "a script's request; the hub answers on the response topic"),
    TopicSpec(f"{ROOT}/hub/response/{{client}}", "hub → script", 1, False, (m.Response,),
              "the answer, with the request's correlation_id"),
)


def hub_state() -> str:
    return f"{ROOT}/hub/state"


def hub_alerts() -> str:
    """Where the shipped configuration has the hub publish alert events (``[alerting] mqtt_topic``): under
    the hub's own subtree, which the broker's ACL lets it write and scripts read."""
    return f"{ROOT}/hub/alerts"


def node_state(node: str) -> str:
    return f"{ROOT}/node/{node}/state"


def device_status(node: str, device: str) -> str:
    return f"{ROOT}/node/{node}/device/{device}/status"


def device_telemetry(node: str, device: str) -> str:
    return f"{ROOT}/node/{node}/device/{device}/telemetry"


def node_metrics(node: str) -> str:
    return f"{ROOT}/node/{node}/metrics"


def node_event(node: str) -> str:
    return f"{ROOT}/node/{node}/event"


def node_command(node: str) -> str:
    return f"{ROOT}/node/{node}/command"


def node_ack(node: str) -> str:
    return f"{ROOT}/node/{node}/ack"


def hub_request(client: str) -> str:
    return f"{ROOT}/hub/request/{client}"


def hub_response(client: str) -> str:
    return f"{ROOT}/hub/response/{client}"


# Subscriptions the hub makes; agents subscribe to their own command topic.
HUB_SUBSCRIPTIONS: tuple[tuple[str, int], ...] = (
    (f"{ROOT}/node/+/state", 1),
    (f"{ROOT}/node/+/device/+/status", 1),
    (f"{ROOT}/node/+/device/+/telemetry", 0),
    (f"{ROOT}/node/+/metrics", 0),
    (f"{ROOT}/node/+/event", 1),
    (f"{ROOT}/hub/request/+", 1),
)


@dataclass(frozen=True)
class ParsedTopic:
    kind: str  # hub_state | node_state | device_status | device_telemetry | node_metrics | node_event | node_command | node_ack | hub_request | hub_response
    node: str | None = None
    device: str | None = None
    client: str | None = None


def parse(topic: str) -> ParsedTopic | None:
    """Recognise a Farmhand topic; None for anything else."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != "farmhand" or parts[1] != "v1":
        return None
    rest = parts[2:]
    match rest:
        case ["hub", "state"]:
            return ParsedTopic("hub_state")
        case ["hub", "request", client]:
            return ParsedTopic("hub_request", client=client)
        case ["hub", "response", client]:
            return ParsedTopic("hub_response", client=client)
        case ["node", node, "state"]:
            return ParsedTopic("node_state", node=node)
        case ["node", node, "metrics"]:
            return ParsedTopic("node_metrics", node=node)
        case ["node", node, "event"]:
            return ParsedTopic("node_event", node=node)
        case ["node", node, "command"]:
            return ParsedTopic("node_command", node=node)
        case ["node", node, "ack"]:
            return ParsedTopic("node_ack", node=node)
        case ["node", node, "device", device, "status"]:
            return ParsedTopic("device_status", node=node, device=device)
        case ["node", node, "device", device, "telemetry"]:
            return ParsedTopic("device_telemetry", node=node, device=device)
    return None


_ALLOWED: dict[str, tuple[type[m.Model], ...]] = {
    "hub_state": (m.HubState,),
    "node_state": (m.NodeState,),
    "device_status": (m.DeviceStatus,),
    "device_telemetry": (m.Telemetry,),
    "node_metrics": (m.HostMetrics,),
    "node_event": m.EVENT_TYPES,
    "node_command": (*m.COMMAND_TYPES, m.Rebirth),
    "node_ack": (m.EventAck,),
    "hub_request": (m.Request,),
    "hub_response": (m.Response,),
}


def allowed_bodies(kind: str) -> tuple[type[m.Model], ...]:
    return _ALLOWED[kind]
