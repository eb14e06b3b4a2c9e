"""Farmhand's wire contract: the only package the agent and the hub share."""

from .codec import ProtocolError, decode, encode, make
from .messages import PROTOCOL_VERSION, Envelope

__all__ = ["PROTOCOL_VERSION", "Envelope", "ProtocolError", "decode", "encode", "make"]
