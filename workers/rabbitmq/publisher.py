"""Publishing with publisher confirms: every message persistent, ``mandatory=True``, and
confirmed by the broker before the call returns.

:class:`RabbitPublisher` is the client-side publisher (the strike loop, the regiment's outbox
relay); the worker side publishes its outputs with :func:`publish_message` on its own channel.
"""
from __future__ import annotations

import os
import socket
import time
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
CONFIRM_POLL_S = 0.002  # how often publish_batch looks for the broker's confirms, seconds


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
        self._batch: BlockingChannel | None = None  # the confirm channel of publish_batch, opened on first use
        self._batch_tag = self._batch_confirmed = 0
        self._batch_nacked: set[int] = set()
        self._batch_returned: set[str] = set()
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

    def publish_batch(self, messages: list[Message], timeout: float = 30.0) -> list[str | None]:
        """Publish ``messages`` (persistent, ``mandatory=True``) back to back, then wait once for the broker's
        confirms of all of them; per message ``None`` when the broker confirmed it, else why not (nack,
        unroutable, connection lost, no confirm within ``timeout`` seconds).  Never raises for the broker's
        or the connection's failures: what was confirmed before one is still reported confirmed.

        One round trip per batch instead of one per message: the relay's rate is no longer the broker's
        latency.  A terminal message nobody waits for counts as confirmed (as in :func:`publish_message`).
        """
        if not messages:
            return []
        results: list[str | None] = ["no confirm from the broker"] * len(messages)
        first = None  # the delivery tag of the first message, once its channel is open
        try:
            channel = self._batch_channel()
            first = self._batch_tag + 1
            for message in messages:
                channel.basic_publish(self.topology.exchange, message.routing_key, encode(message), properties_of(message),
                                      mandatory=True)
                self._batch_tag += 1
            last = self._batch_tag
            deadline = time.monotonic() + timeout
            while self._batch_confirmed < last and time.monotonic() < deadline:
                # short waits: process_data_events returns at its time limit, not at the confirms (they reach the
                # underlying channel, which does not wake it)
                self.connection.process_data_events(time_limit=CONFIRM_POLL_S)
        except RECONNECT_ON as exc:
            error = f"connection lost: {type(exc).__name__} {exc}".strip()
            self._batch = None
        else:
            error = "no confirm from the broker"
        for i, message in enumerate(messages):
            tag = first + i if first is not None else None
            if tag is None:  # no channel: nothing was published
                results[i] = error
            elif tag in self._batch_nacked:
                results[i] = "the broker refused it (nack)"
            elif message.message_id in self._batch_returned and message.type not in TERMINAL_TYPES:
                results[i] = f"no queue is bound to {message.routing_key!r} on exchange {self.topology.exchange!r}"
            elif tag <= self._batch_confirmed:
                results[i] = None
            else:
                results[i] = error
        return results

    def _batch_channel(self):
        """A second channel in confirm mode whose confirms are collected, not awaited one by one."""
        if self._batch is not None and self._batch.is_open:
            return self._batch
        channel = self.connection.channel()
        self._batch_tag, self._batch_confirmed, self._batch_nacked, self._batch_returned = 0, 0, set(), set()
        ready = []

        def on_confirm(frame) -> None:
            method = frame.method
            tags = range(self._batch_confirmed + 1, method.delivery_tag + 1) if method.multiple else [method.delivery_tag]
            if isinstance(method, pika.spec.Basic.Nack):
                self._batch_nacked.update(tags)
            self._batch_confirmed = max(self._batch_confirmed, method.delivery_tag)

        # pika's blocking channel waits for each confirm in turn; its underlying channel reports them as they come
        channel._impl.confirm_delivery(ack_nack_callback=on_confirm, callback=lambda _frame: ready.append(True))
        deadline = time.monotonic() + 30.0
        while not ready and time.monotonic() < deadline:
            self.connection.process_data_events(time_limit=CONFIRM_POLL_S)
        if not ready:
            raise pika.exceptions.AMQPConnectionError("the broker did not turn on publisher confirms")
        channel.add_on_return_callback(lambda _ch, _method, props, _body: self._batch_returned.add(props.message_id))
        self._batch = channel
        return channel

    def close(self) -> None:
        close_quietly(self.connection)

    def __enter__(self) -> "RabbitPublisher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
