"""Publishing with publisher confirms: every message persistent, ``mandatory=True``, and
confirmed by the broker before the call returns.

:class:`RabbitPublisher` is the client-side publisher (the strike loop, the regiment's outbox
relay); the worker side publishes its outputs with :func:`publish_message` on its own channel.
"""
from __future__ import annotations

import os
import socket
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from industriverse.errors import InfrastructureError
from messages.codec import encode
from messages.envelope import Message
from messages.types import TERMINAL_TYPES
from workers.broker import Unroutable
from workers.logging import get_logger
from workers.rabbitmq.connection import RECONNECT_ON, close_quietly, connection_parameters, redact, resolve_url
from workers.rabbitmq.topology import Topology, resolve_prefix

log = get_logger("industriverse.rabbitmq")


def properties_of(message: Message) -> pika.BasicProperties:
    """AMQP properties of a message: persistent, JSON, correlation ID = strike ID."""
    return pika.BasicProperties(
        content_type="application/json",
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=message.message_id,
        correlation_id=message.strike_id,
        type=message.type,
        timestamp=int(message.created_at.timestamp()),
        headers={
            "schema_version": message.schema_version,
            "attempt": message.attempt,
            "round": message.round,
            "contract_id": message.contract_id,
            "causation_id": message.causation_id,
        },
    )


def publish_message(channel: BlockingChannel, topology: Topology, message: Message) -> None:
    """Publish ``message`` persistently with ``mandatory=True`` on a confirm-mode channel and
    return once the broker confirmed it.

    A terminal message (``strike.completed``/``strike.failed``) that no client waits for is
    fine (the outcome is in the store); any other unroutable message raises :class:`Unroutable`.
    """
    try:
        channel.basic_publish(topology.exchange, message.routing_key, encode(message), properties_of(message), mandatory=True)
    except pika.exceptions.UnroutableError:
        if message.type in TERMINAL_TYPES:
            log.info("no client waits for this outcome", type=message.type, strike_id=message.strike_id)
            return
        raise Unroutable(f"no queue is bound to {message.routing_key!r} on exchange {topology.exchange!r}") from None


class RabbitPublisher:
    """Publish messages with confirms from one thread (the strike loop, the regiment).

    Declares the topology on connect so that a request published before any worker started
    waits in its queue.  A connection failure on connect raises :class:`InfrastructureError`.
    """

    def __init__(self, url: str | None = None, *, prefix: str | None = None, topology: Topology | None = None,
                 name: str = "industriverse client"):
        self.url = resolve_url(url)
        self.topology = topology or Topology(resolve_prefix(prefix))
        self.connection: pika.BlockingConnection | None = None
        try:
            self.connection = pika.BlockingConnection(connection_parameters(self.url, f"{name} {socket.gethostname()}:{os.getpid()}"))
            self.channel = self.connection.channel()
            self.channel.confirm_delivery()
            self.topology.declare(self.channel)
        except RECONNECT_ON as exc:
            close_quietly(self.connection)
            raise InfrastructureError(f"cannot reach the broker at {redact(self.url)}: {type(exc).__name__} {exc}".strip()) from None

    @property
    def is_open(self) -> bool:
        return self.connection is not None and self.connection.is_open and self.channel.is_open

    def publish(self, message: Message) -> None:
        """Publish and wait for the broker's confirm (pika's errors pass through: callers that
        reconnect tell a lost connection from a refusal)."""
        publish_message(self.channel, self.topology, message)

    def close(self) -> None:
        close_quietly(self.connection)

    def __enter__(self) -> "RabbitPublisher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
