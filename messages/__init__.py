"""Typed messages of the value loop: envelope, bodies, wire codec, routing keys, JSON Schemas.

>>> from messages import Message, StrikeRequested, encode, decode
>>> m = Message.start(StrikeRequested(domain="hvac", constraint={}))
>>> decode(encode(m)) == m
True
"""
from messages.codec import decode, encode, json_schemas, to_dict
from messages.envelope import Body, InvalidMessage, Message, Sha256, StrikeId
from messages.live import Setpoints, Status, Telemetry
from messages.routing import CONSUMES, WORKER_KINDS, binding_key, outcome_keys, routing_key, strike_key
from messages.types import (
    BODIES,
    MESSAGE_TYPES,
    TERMINAL_TYPES,
    CapsuleDeployed,
    PlanOptimized,
    PlanRejected,
    PlanSimulated,
    PlanVerified,
    StrikeCompleted,
    StrikeFailed,
    StrikeRequested,
)

__all__ = [
    "BODIES", "CONSUMES", "MESSAGE_TYPES", "TERMINAL_TYPES", "WORKER_KINDS",
    "Body", "CapsuleDeployed", "InvalidMessage", "Message", "PlanOptimized", "PlanRejected",
    "PlanSimulated", "PlanVerified", "Sha256", "StrikeCompleted", "StrikeFailed", "StrikeId",
    "StrikeRequested", "Setpoints", "Status", "Telemetry", "binding_key", "decode", "encode", "json_schemas", "outcome_keys",
    "routing_key", "strike_key", "to_dict",
]
