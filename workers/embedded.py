"""The embedded bus: the same actors in one process, no server.

Messages are handled one at a time in FIFO order, so a run is deterministic for a given
seed.  Semantics are those of the RabbitMQ bus (:mod:`workers.middleware`): idempotency by
``(strike_id, stage)`` in the store, a retryable error retried after its backoff (the
message goes back to the end of the queue with ``attempt`` + 1), anything else
dead-lettered (kept in :attr:`EmbeddedBus.dead_letters` with the reason) and
``strike.failed`` published.  Messages travel as their wire bytes, so a message that would
not survive the broker does not survive here either.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable, Iterable

from industriverse.errors import InfrastructureError
from messages.codec import encode
from messages.envelope import Message
from messages.routing import outcome_keys, strike_key
from messages.types import TERMINAL_TYPES
from workers.actor import Actor, Registry
from workers.broker import Bus, DeadLetter, Unroutable, topic_matches
from workers.middleware import RetryPolicy, process

Listener = Callable[[Message], None]


class EmbeddedBus(Bus):
    """In-process bus.  ``published`` is the trace of every message published, in order."""

    def __init__(self, actors: Iterable[Actor] = (), *, policy: RetryPolicy = RetryPolicy(),
                 engine: Any = None, sleep: Callable[[float], None] = time.sleep):
        self._actors: dict[str, Actor] = {}
        self._queue: deque[tuple[str, str | None, bytes]] = deque()  # (message type, strike id, bytes)
        self._listeners: list[tuple[str, Listener]] = []
        self._stopping = False
        self.policy, self.engine, self._sleep = policy, engine, sleep
        self.published: list[Message] = []
        self.dead_letters: list[DeadLetter] = []
        self.consume(actors)

    # --- Bus ----------------------------------------------------------------------------
    def consume(self, actors: Iterable[Actor]) -> None:
        for a in Registry(list(self._actors.values()) + list(actors)):
            self._actors[a.consumes] = a

    def publish(self, message: Message) -> None:
        key = message.routing_key
        listeners = [fn for pattern, fn in self._listeners if topic_matches(pattern, key)]
        if message.type not in self._actors and message.type not in TERMINAL_TYPES and not listeners:
            raise Unroutable(f"no actor consumes {message.type!r} on this bus")
        self.published.append(message)
        for fn in listeners:
            fn(message)
        if message.type in self._actors:
            self._queue.append((message.type, message.strike_id, encode(message)))

    def publish_raw(self, message_type: str, body: bytes, *, strike_id: str | None = None) -> None:
        """Queue raw bytes for the actor of ``message_type`` (what a broker may deliver: anything)."""
        if message_type not in self._actors:
            raise Unroutable(f"no actor consumes {message_type!r} on this bus")
        self._queue.append((message_type, strike_id, body))

    def run(self, max_messages: int | None = None) -> int:
        """Handle queued messages in FIFO order until none is left; return how many were handled."""
        self._stopping = False
        handled = 0
        while self._queue and not self._stopping and (max_messages is None or handled < max_messages):
            mtype, strike_id, raw = self._queue.popleft()
            a = self._actors[mtype]
            outcome = process(raw, {t: x for t, x in self._actors.items() if x.kind == a.kind},
                              worker=a.kind, policy=self.policy, strike_id=strike_id, engine=self.engine)
            handled += 1
            if outcome.action == "retry":
                self._sleep(outcome.delay)
                self._queue.append((mtype, strike_id, encode(outcome.retry)))
                continue
            if outcome.action == "dead":
                headers = {"x-error": outcome.reason, "x-error-stage": outcome.stage, "x-original-queue": a.kind}
                self.dead_letters.append(DeadLetter(queue=f"{a.kind}.dead", body=raw, reason=outcome.reason, headers=headers))
            for m in outcome.publish:
                self.publish(m)
        return handled

    def stop(self) -> None:
        self._stopping = True

    # --- client side ------------------------------------------------------------------------
    def subscribe(self, pattern: str, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` for every published message whose routing key matches ``pattern``;
        returns a function that unsubscribes."""
        entry = (pattern, listener)
        self._listeners.append(entry)
        return lambda: self._listeners.remove(entry)

    def request(self, message: Message, *, on_progress: Listener | None = None) -> Message:
        """Publish ``message`` (usually ``strike.requested``), run the cascade, return the
        strike's ``strike.completed`` or ``strike.failed`` message.

        ``on_progress`` sees every message of this strike as it is published.
        """
        outcomes: list[Message] = []
        unsubscribe = [self.subscribe(key, outcomes.append) for key in outcome_keys(message.strike_id)]
        if on_progress is not None:
            unsubscribe.append(self.subscribe(strike_key(message.strike_id), on_progress))
        try:
            self.publish(message)
            self.run()
        finally:
            for fn in unsubscribe:
                fn()
        if not outcomes:
            raise InfrastructureError(f"strike {message.strike_id} ended without strike.completed or strike.failed")
        return outcomes[0]
