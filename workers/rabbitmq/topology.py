"""The exchanges and queues under one name prefix, declared idempotently by every worker and
every client on connect.

For a name prefix ``P`` (``INDUSTRIVERSE_AMQP_PREFIX``, default ``industriverse``):

* ``P``: one durable **topic** exchange; every message is published to it with routing key
  ``<type>.<strike_id>`` (:mod:`messages.routing`);
* ``P.<kind>``: one durable **quorum** queue per worker kind, bound to ``<type>.*`` for each type
  the kind consumes, with ``x-delivery-limit`` (5) and dead-lettering to ``P.dlx``;
* ``P.dlx``: a durable direct exchange; ``P.<kind>.dead`` (quorum) is bound to it with key
  ``P.<kind>``, so both the broker's dead letters (delivery limit exceeded) and ours land there.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from pika.adapters.blocking_connection import BlockingChannel

from messages.routing import CONSUMES, binding_key, routes
from workers.actor import Actor, Registry

DEFAULT_PREFIX = "industriverse"
DELIVERY_LIMIT = 5


def resolve_prefix(prefix: str | None = None) -> str:
    """``prefix``, else ``INDUSTRIVERSE_AMQP_PREFIX``, else ``industriverse``."""
    return prefix or os.environ.get("INDUSTRIVERSE_AMQP_PREFIX") or DEFAULT_PREFIX


@dataclass(frozen=True)
class Topology:
    """Names and declaration of the exchanges and queues under one prefix."""

    prefix: str = DEFAULT_PREFIX
    consumes: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(CONSUMES))
    delivery_limit: int = DELIVERY_LIMIT

    @classmethod
    def for_actors(cls, actors: Iterable[Actor], prefix: str | None = None, **kwargs: Any) -> "Topology":
        """The standard queues plus those of ``actors`` (a message type feeds exactly one queue)."""
        table = dict(CONSUMES)
        for kind, types in Registry(actors).consumes().items():
            table[kind] = tuple(dict.fromkeys(table.get(kind, ()) + types))
        routes(table)  # raises if a type would feed two queues
        return cls(resolve_prefix(prefix), table, **kwargs)

    @property
    def exchange(self) -> str:
        return self.prefix

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.prefix}.dlx"

    def queue(self, kind: str) -> str:
        return f"{self.prefix}.{kind}"

    def dead_queue(self, kind: str) -> str:
        return f"{self.prefix}.{kind}.dead"

    def declare(self, channel: BlockingChannel) -> None:
        """Declare everything (idempotent; a queue declared before with other arguments is a
        PRECONDITION_FAILED error from the broker)."""
        channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        channel.exchange_declare(self.dead_letter_exchange, exchange_type="direct", durable=True)
        for kind, types in self.consumes.items():
            q, dead = self.queue(kind), self.dead_queue(kind)
            channel.queue_declare(dead, durable=True, arguments={"x-queue-type": "quorum"})
            channel.queue_bind(dead, self.dead_letter_exchange, routing_key=q)
            channel.queue_declare(
                q,
                durable=True,
                arguments={
                    "x-queue-type": "quorum",
                    "x-delivery-limit": self.delivery_limit,
                    "x-dead-letter-exchange": self.dead_letter_exchange,
                    "x-dead-letter-routing-key": q,
                },
            )
            for t in types:
                channel.queue_bind(q, self.exchange, routing_key=binding_key(t))

    def delete(self, channel: BlockingChannel) -> None:
        """Delete every queue and exchange of this topology (tests, operators starting afresh)."""
        for kind in self.consumes:
            channel.queue_delete(self.queue(kind))
            channel.queue_delete(self.dead_queue(kind))
        channel.exchange_delete(self.exchange)
        channel.exchange_delete(self.dead_letter_exchange)
