"""The bus interface both transports implement (embedded in-process, RabbitMQ).

A bus carries typed messages between actors.  Its contract, whatever the transport:

* ``publish(message)`` delivers ``message`` to the actor consuming its type (and to anyone
  bound to its routing key ``<type>.<strike_id>``); a work message nobody consumes is an error
  (:class:`Unroutable`), a terminal one (``strike.completed``/``strike.failed``) nobody waits
  for is fine (its outcome is in the store).
* ``consume(actors)`` registers the handlers this bus runs.
* ``run()`` delivers messages until there is nothing left to do (embedded) or until
  ``stop()`` (RabbitMQ); ``stop()`` may be called from another thread or a signal handler.
* Handling follows :func:`workers.middleware.process`: idempotent per ``(strike_id, stage)``,
  retryable errors retried with a bound, anything else dead-lettered with its reason and the
  strike failed; the input is acknowledged only after the output messages were published.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Iterable

from industriverse.errors import InfrastructureError
from messages.envelope import Message
from workers.actor import Actor


class Unroutable(InfrastructureError):
    """A work message was published that no queue consumes."""


@dataclass(frozen=True)
class DeadLetter:
    """A message that ended in a dead-letter queue, with why."""

    queue: str
    body: bytes
    reason: str
    headers: dict[str, Any] = field(default_factory=dict)


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: ``*`` is one word, ``#`` is zero or more words."""

    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and (p[0] == "*" or p[0] == k[0]) and match(p[1:], k[1:])

    return match(pattern.split("."), key.split("."))


class Bus(abc.ABC):
    """Publish typed messages; run registered actors on the messages they consume."""

    @abc.abstractmethod
    def publish(self, message: Message) -> None:
        """Deliver ``message`` (persistently and confirmed, on a broker)."""

    @abc.abstractmethod
    def consume(self, actors: Iterable[Actor]) -> None:
        """Register ``actors``: each handles the messages of its ``consumes`` type."""

    @abc.abstractmethod
    def run(self) -> None:
        """Deliver messages to the actors until done or stopped."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Ask :meth:`run` to return (after the in-flight messages are finished)."""
