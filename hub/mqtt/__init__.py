"""The hub's side of MQTT: the ingest that decodes each message once and hands typed bodies to the
components that subscribed to their type, the command outbox, the link to the broker, the embedded broker."""

from .component import Mqtt
from .confirm import EventConfirmations
from .ingest import Effects, Ingest, Received
from .link import MqttLink
from .outbox import CommandOutbox, Outgoing, Publisher
from .rebirth import RebirthRequests

__all__ = ["CommandOutbox", "Effects", "EventConfirmations", "Ingest", "Mqtt", "MqttLink", "Outgoing", "Publisher", "RebirthRequests", "Received"]
