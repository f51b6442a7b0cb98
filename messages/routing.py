"""Routing keys and which worker kind consumes which message type.

Every message is published to one topic exchange with the routing key
``<type>.<strike_id>`` (types have exactly two dot-separated words), so that

* a worker queue binds ``<type>.*`` (:func:`binding_key`) and gets every strike's messages of
  that type;
* a client waiting for one strike binds ``strike.completed.<id>`` and ``strike.failed.<id>``
  (:func:`outcome_keys`), and may follow its progress with ``*.*.<id>`` (:func:`strike_key`).
"""
from __future__ import annotations

from messages.envelope import routing_key
from messages.types import MESSAGE_TYPES

__all__ = ["CONSUMES", "WORKER_KINDS", "binding_key", "outcome_keys", "routes", "routing_key", "strike_key"]

# The cascade of DESIGN.md §2: worker kind -> the message types its queue is bound to.
CONSUMES: dict[str, tuple[str, ...]] = {
    "optimizer": ("strike.requested",),
    "simulator": ("plan.optimized",),
    "shield": ("plan.simulated",),
    "deployer": ("plan.verified",),
    "reporter": ("capsule.deployed", "plan.rejected"),
}
WORKER_KINDS: tuple[str, ...] = tuple(CONSUMES)


def binding_key(message_type: str) -> str:
    """Binding of a worker queue: every strike's messages of ``message_type``."""
    if message_type not in MESSAGE_TYPES:
        raise ValueError(f"unknown message type {message_type!r}")
    return f"{message_type}.*"


def strike_key(strike_id: str) -> str:
    """Binding that receives every message of one strike (progress)."""
    return f"*.*.{strike_id}"


def outcome_keys(strike_id: str) -> tuple[str, str]:
    """Bindings of the two messages that end a strike."""
    return routing_key("strike.completed", strike_id), routing_key("strike.failed", strike_id)


def routes(consumes: dict[str, tuple[str, ...]] | None = None) -> dict[str, str]:
    """``{message_type: worker_kind}`` (each work type has exactly one consuming kind)."""
    table: dict[str, str] = {}
    for kind, types in (CONSUMES if consumes is None else consumes).items():
        for t in types:
            if t in table and table[t] != kind:
                raise ValueError(f"message type {t!r} is consumed by both {table[t]!r} and {kind!r}")
            table[t] = kind
    return table
